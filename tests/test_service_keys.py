"""Service keys: made once, found by keyed hash, revoked for good, and the CLI around them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.crypto.keys import Keys
from gateway.errors import NotFoundError
from gateway.store import Store
from gateway.xero.custody import ServiceKeyAuthority
from gateway.xero.service_keys import (
    ServiceKeyError,
    authenticate_service_key,
    create_service_key,
    revoke_service_key,
)
from tests.conftest import SECRET, START
from tests.test_cli import run

SIGNER = Keys.derive(SECRET).service_keys


async def test_a_key_is_shown_once_stored_hashed_and_names_its_organisation(store: Store) -> None:
    org = await store.organisations.add(name="Harbour", now=START)
    raw, key = await create_service_key(
        store, SIGNER, org_id=org.id, name="nightly sync", now=START, by="cli"
    )
    assert raw.startswith("xsk_")
    rows = await store.db.fetch_all("SELECT * FROM service_keys")
    assert raw not in repr(rows)
    assert rows[0]["key_hash"] == SIGNER.sign(raw.encode())  # keyed, not a bare SHA-256
    authority = await authenticate_service_key(store, SIGNER, raw, START + 5)
    assert authority == ServiceKeyAuthority(key_id=key.id, org_id=org.id)
    assert (await store.service_keys.for_org(org.id))[0].last_used_at == START + 5
    trail = await store.audit.list(kind="service_key.created")
    assert trail[0].subject == key.id
    assert raw not in repr(trail)


async def test_only_a_live_key_of_ours_is_accepted(store: Store) -> None:
    org = await store.organisations.add(name="Harbour", now=START)
    raw, key = await create_service_key(store, SIGNER, org_id=org.id, name="job", now=START, by="t")
    for wrong in ("", "xsk_short", raw[:-1] + ("A" if raw[-1] != "A" else "B"), "Bearer " + raw):
        assert await authenticate_service_key(store, SIGNER, wrong, START) is None
    # Another secret key's hash does not match.
    assert (
        await authenticate_service_key(store, Keys.derive("o" * 48).service_keys, raw, START)
        is None
    )
    # After a rotation, the previous key still finds it.
    rotated = Keys.derive("o" * 48, [SECRET]).service_keys
    assert await authenticate_service_key(store, rotated, raw, START) is not None
    assert await revoke_service_key(store, key.id, org_id=org.id, now=START + 1, by="t")
    assert not await revoke_service_key(store, key.id, org_id=org.id, now=START + 2, by="t")
    assert await authenticate_service_key(store, SIGNER, raw, START + 3) is None
    assert len(await store.audit.list(kind="service_key.revoked")) == 1
    with pytest.raises(NotFoundError):
        await revoke_service_key(store, key.id, org_id="org_other", now=START, by="t")


async def test_bad_names_and_unknown_organisations_are_refused(store: Store) -> None:
    org = await store.organisations.add(name="Harbour", now=START)
    for name in ("", "  ", "x" * 65, "tab\there"):
        with pytest.raises(ServiceKeyError):
            await create_service_key(store, SIGNER, org_id=org.id, name=name, now=START, by="t")
    with pytest.raises(NotFoundError):
        await create_service_key(store, SIGNER, org_id="org_nope", name="j", now=START, by="t")


def test_the_cli_creates_lists_and_revokes_keys(tmp_path: Path) -> None:
    secret = "cli-secret-key-long-enough-for-the-check-123"
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "state/gw.sqlite3"\n'
        f'[security]\nsecret_key = "{secret}"\ncookie_secure = false\n'
    )
    assert run(config, "org", "add", "Harbour").returncode == 0
    made = run(config, "service-key", "create", "--org", "Harbour", "--name", "nightly sync")
    assert made.returncode == 0, made.stderr
    raw = made.stdout.strip()
    key_id = made.stderr.split()[0]
    listing = run(config, "service-key", "list", "--org", "Harbour").stdout
    assert key_id in listing
    assert "nightly sync" in listing
    assert "active" in listing
    assert raw not in listing

    async def check(expect_live: bool) -> None:
        async with await Store.open(tmp_path / "state/gw.sqlite3") as store:
            found = await authenticate_service_key(
                store, Keys.derive(secret).service_keys, raw, START
            )
            assert (found is not None) is expect_live

    asyncio.run(check(True))
    revoked = run(config, "service-key", "revoke", "--org", "Harbour", key_id)
    assert revoked.returncode == 0
    assert f"revoked {key_id}" in revoked.stdout
    assert "revoked" in run(config, "service-key", "list", "--org", "Harbour").stdout
    asyncio.run(check(False))
    unknown = run(config, "service-key", "revoke", "--org", "Harbour", "svk_nope")
    assert unknown.returncode == 1
    assert "svk_nope" in unknown.stderr
    no_org = run(config, "service-key", "list", "--org", "Nobody")
    assert no_org.returncode == 1
    assert "Nobody" in no_org.stderr

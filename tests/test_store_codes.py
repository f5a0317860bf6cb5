"""One-time codes in the store (a real SQLite file), and re-sealing every sealed column."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.crypto.keys import Keys
from gateway.errors import SealError
from gateway.store import Store, sealed, sealed_columns
from gateway.store.codes import DESTINATION_COLUMN, destination_aad, new_code_id
from gateway.store.sealed import (
    RotationCount,
    SealedColumn,
    register_sealed_column,
    reseal_all,
    reseal_column,
)
from tests.conftest import SECRET, START

OLD_SECRET = "the-previous-secret-key-long-enough-9876543210"
DESTINATION = "+61412345678"


async def _user(store: Store, email: str = "ann@h.example") -> str:
    org = await store.organisations.find_by_name("Harbour")
    if org is None:
        org = await store.organisations.add(name="Harbour", now=START)
    user = await store.users.add(
        org_id=org.id, email=email, display_name="Ann", role="member", password_hash="x", now=START
    )
    return user.id


async def _issue(
    store: Store, keys: Keys, user_id: str, *, purpose: str = "challenge", lifetime: float = 600
) -> str:
    code_id = new_code_id()
    await store.codes.issue(
        code_id=code_id,
        user_id=user_id,
        purpose=purpose,
        channel="sms",
        sealed_destination=keys.at_rest.seal(
            DESTINATION.encode(), destination_aad(code_id, user_id)
        ),
        digest="d" * 64,
        now=START,
        expires_at=START + lifetime,
    )
    return code_id


async def test_a_code_is_consumed_once_and_only_before_it_expires(store: Store) -> None:
    keys = Keys.derive(SECRET)
    user = await _user(store)
    first = await _issue(store, keys, user)
    assert not await store.codes.consume(first, now=START + 600)  # expires at exactly 600 s
    assert await store.codes.consume(first, now=START + 599.999)
    assert not await store.codes.consume(first, now=START + 600.5)  # used
    assert not await store.codes.consume(first, now=START + 1)  # used, even in time
    record = await store.codes.current(user, "challenge")
    assert record is not None
    assert record.used_at == START + 599.999


async def test_a_new_code_retires_the_one_before_it_for_that_step_only(store: Store) -> None:
    keys = Keys.derive(SECRET)
    user = await _user(store)
    old = await _issue(store, keys, user)
    other_step = await _issue(store, keys, user, purpose="enrol-backup")
    new = await _issue(store, keys, user)
    assert not await store.codes.consume(old, now=START + 1)
    current = await store.codes.current(user, "challenge")
    assert current is not None
    assert current.id == new
    assert await store.codes.consume(other_step, now=START + 1)
    assert await store.codes.consume(new, now=START + 1)


async def test_of_two_racing_consumptions_exactly_one_wins(tmp_path: Path) -> None:
    # Two connections to one file, as two processes would have.
    path = tmp_path / "race.sqlite3"
    async with await Store.open(path) as a, await Store.open(path) as b:
        keys = Keys.derive(SECRET)
        user = await _user(a)
        for _ in range(10):
            code = await _issue(a, keys, user)
            results = await asyncio.gather(
                a.codes.consume(code, now=START + 1), b.codes.consume(code, now=START + 1)
            )
            assert sorted(results) == [False, True]


async def test_the_destination_is_sealed_in_the_file(store: Store, tmp_path: Path) -> None:
    keys = Keys.derive(SECRET)
    user = await _user(store)
    code = await _issue(store, keys, user)
    await store.close()
    raw = (tmp_path / "gateway.sqlite3").read_bytes()
    assert DESTINATION.encode() not in raw
    assert b"412345678" not in raw
    async with await Store.open(tmp_path / "gateway.sqlite3") as again:
        record = await again.codes.current(user, "challenge")
        assert record is not None
        aad = destination_aad(code, user)
        assert keys.at_rest.open(record.sealed_destination, aad) == DESTINATION.encode()
        with pytest.raises(SealError):  # bound to its row and user
            keys.at_rest.open(record.sealed_destination, destination_aad(code, "usr_other"))


async def test_purge_drops_codes_expired_before_the_cut(store: Store) -> None:
    keys = Keys.derive(SECRET)
    user = await _user(store)
    await _issue(store, keys, user, lifetime=60)
    assert await store.codes.purge(before=START + 59) == 0
    assert await store.codes.purge(before=START + 60) == 1
    assert await store.codes.current(user, "challenge") is None


async def test_deleting_a_user_deletes_their_codes(store: Store) -> None:
    keys = Keys.derive(SECRET)
    user = await _user(store)
    await _issue(store, keys, user)
    async with store.db.transaction() as tx:
        await tx.execute("PRAGMA foreign_keys = ON")
        await tx.execute("DELETE FROM users WHERE id = :id", {"id": user})
    assert await store.codes.current(user, "challenge") is None


def test_the_code_destination_column_is_registered() -> None:
    assert DESTINATION_COLUMN in sealed_columns()
    with pytest.raises(ValueError, match="registered"):
        register_sealed_column(
            SealedColumn(
                table="one_time_codes", id_column="id", column="destination", aad=lambda _: b""
            )
        )
    with pytest.raises(ValueError, match="identifiers"):
        SealedColumn(table="t; DROP TABLE users", id_column="id", column="c", aad=lambda _: b"")


async def test_rotation_reseals_old_values_and_leaves_current_ones(store: Store) -> None:
    user = await _user(store)
    old_keys = Keys.derive(OLD_SECRET)
    old_codes = [
        await _issue(store, old_keys, await _user(store, f"u{n}@h.example")) for n in range(5)
    ]
    rotated = Keys.derive(SECRET, [OLD_SECRET])
    current = await _issue(store, rotated, user)
    before = await store.codes.current(user, "challenge")
    # Batches of two: five old values and one current one take four transactions.
    count = await reseal_column(store.db, rotated.at_rest, DESTINATION_COLUMN, batch=2)
    assert count == RotationCount(column="one_time_codes.destination", resealed=5, current=1)
    after = await store.codes.current(user, "challenge")
    assert before is not None
    assert after is not None
    assert after.sealed_destination == before.sealed_destination  # untouched
    # The old key can go: every value opens with the new one alone.
    new_only = Keys.derive(SECRET)
    rows = await store.db.fetch_all("SELECT id, user_id FROM one_time_codes")
    for row in rows:
        record = await store.codes.current(row["user_id"], "challenge")
        assert record is not None
        aad = destination_aad(record.id, row["user_id"])
        assert new_only.at_rest.open(record.sealed_destination, aad) == DESTINATION.encode()
    assert {r["id"] for r in rows} == {*old_codes, current}
    again = await reseal_all(store.db, new_only.at_rest)
    assert RotationCount(column="one_time_codes.destination", resealed=0, current=6) in again


async def test_a_value_no_configured_key_opens_stops_rotation_with_a_clear_error(
    store: Store,
) -> None:
    user = await _user(store)
    await _issue(store, Keys.derive(OLD_SECRET), user)
    with pytest.raises(SealError, match="previous_secret_keys"):
        await reseal_column(store.db, Keys.derive(SECRET).at_rest, DESTINATION_COLUMN)


async def test_a_column_another_module_registers_is_resealed_too(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sealed, "_REGISTRY", dict(sealed._REGISTRY))
    async with store.db.transaction() as tx:
        await tx.execute("CREATE TABLE secrets_elsewhere (user_id TEXT PRIMARY KEY, seed TEXT)")
    column = register_sealed_column(
        SealedColumn(
            table="secrets_elsewhere",
            id_column="user_id",
            column="seed",
            aad=lambda row: f"seed:{row['user_id']}".encode(),
        )
    )
    old = Keys.derive(OLD_SECRET).at_rest
    async with store.db.transaction() as tx:
        for n in range(3):
            text = sealed.sealed_text(old.seal(b"seed", f"seed:u{n}".encode()))
            params = {"id": f"u{n}", "seed": text}
            await tx.execute("INSERT INTO secrets_elsewhere VALUES (:id, :seed)", params)
        await tx.execute("INSERT INTO secrets_elsewhere VALUES ('u9', NULL)")
    counts = await reseal_all(store.db, Keys.derive(SECRET, [OLD_SECRET]).at_rest)
    assert RotationCount(column=column.name, resealed=3, current=0) in counts
    new_only = Keys.derive(SECRET).at_rest
    for row in await store.db.fetch_all("SELECT * FROM secrets_elsewhere WHERE seed IS NOT NULL"):
        blob = sealed.sealed_bytes(row["seed"])
        assert new_only.open(blob, f"seed:{row['user_id']}".encode()) == b"seed"

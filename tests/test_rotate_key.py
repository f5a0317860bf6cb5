"""`xero-gateway rotate-key`: rotate the secret, re-seal, drop the old key, and all still opens."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.clock import ManualClock
from gateway.config import build_config
from gateway.crypto.keys import Keys
from gateway.delivery.outbox import OutboxSender
from gateway.sending.drivers import Drivers
from gateway.sending.service import Channel, CodeRequest, CodeSender, SendLimits
from gateway.store import Store
from tests.conftest import START
from tests.test_cli import run

OLD = "the-old-secret-key-that-is-long-enough-0001"
NEW = "the-new-secret-key-that-is-long-enough-0002"


def _write(path: Path, secret: str, previous: tuple[str, ...] = ()) -> None:
    listed = ", ".join(f'"{key}"' for key in previous)
    path.write_text(
        '[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "gw.sqlite3"\n'
        f'[security]\nsecret_key = "{secret}"\nprevious_secret_keys = [{listed}]\n'
    )


def _sender(store: Store, secret: str, outbox: OutboxSender) -> CodeSender:
    config = build_config({"upstream": {"url": "http://127.0.0.1:9"}}, env={}, serving=False)
    return CodeSender(
        store=store,
        clock=ManualClock(START),
        code_key=b"c" * 32,
        sealer=Keys.derive(secret).at_rest,
        drivers=Drivers(sms=outbox, email=outbox, outbox=outbox),
        limits=SendLimits.for_config(config),
    )


async def test_rotate_key_reseals_so_the_old_key_can_go(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    outbox = OutboxSender()
    async with await Store.open(tmp_path / "gw.sqlite3") as store:
        org = await store.organisations.add(name="Harbour", now=START)
        users = [
            await store.users.add(
                org_id=org.id, email=f"u{n}@h.example", display_name="U", role="member",
                password_hash="x", now=START,
            )
            for n in range(2)
        ]  # fmt: skip
        sending = _sender(store, OLD, outbox)
        for user, channel, to in zip(
            users, (Channel.SMS, Channel.EMAIL), ("+61412345678", "u1@h.example"), strict=True
        ):
            request = CodeRequest(
                user_id=user.id, org_id=org.id, purpose="challenge", channel=channel,
                destination=to, lifetime=600,
            )  # fmt: skip
            assert (await sending.send_code(request)).sent
        await sending.close()

    # The secret is rotated; the old one is kept as a previous key for now.
    _write(config, NEW, (OLD,))
    done = run(config, "rotate-key")
    assert done.returncode == 0, done.stderr
    assert "one_time_codes.destination: 2 re-sealed with the current key, 0 already current" in (
        done.stdout
    )
    # The old key goes; everything still opens, and nothing is left to re-seal.
    _write(config, NEW)
    again = run(config, "rotate-key")
    assert again.returncode == 0, again.stderr
    assert "0 re-sealed with the current key, 2 already current" in again.stdout
    async with await Store.open(tmp_path / "gw.sqlite3") as store:
        sending = _sender(store, NEW, outbox)
        for message, user in zip(reversed(outbox.messages), users, strict=True):
            code = re.search(r"\b\d{6}\b", message.body)
            assert code is not None
            check = await sending.check_code(user_id=user.id, purpose="challenge", typed=code[0])
            assert check.accepted
            assert check.destination == message.to
        await sending.close()
        kinds = [event.kind for event in await store.audit.list()]
        assert kinds.count("keys.resealed") == 2


async def test_rotate_key_without_the_old_key_fails_clearly_and_changes_nothing(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    outbox = OutboxSender()
    async with await Store.open(tmp_path / "gw.sqlite3") as store:
        org = await store.organisations.add(name="Harbour", now=START)
        user = await store.users.add(
            org_id=org.id, email="a@h.example", display_name="A", role="member",
            password_hash="x", now=START,
        )  # fmt: skip
        sending = _sender(store, OLD, outbox)
        request = CodeRequest(
            user_id=user.id, org_id=org.id, purpose="challenge", channel=Channel.SMS,
            destination="+61412345678", lifetime=600,
        )  # fmt: skip
        assert (await sending.send_code(request)).sent
        await sending.close()
        before = await store.db.fetch_all("SELECT destination FROM one_time_codes")
    _write(config, NEW)  # the old key forgotten too soon
    failed = run(config, "rotate-key")
    assert failed.returncode == 1
    assert "previous_secret_keys" in failed.stderr
    async with await Store.open(tmp_path / "gw.sqlite3") as store:
        assert await store.db.fetch_all("SELECT destination FROM one_time_codes") == before


def test_rotate_key_needs_the_secret_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "gw.sqlite3"\n')
    result = run(config, "rotate-key")
    assert result.returncode == 2
    assert "secret_key" in result.stderr

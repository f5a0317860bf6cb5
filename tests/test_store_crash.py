"""Crash test: a writer killed with SIGKILL at random moments never loses an acknowledged commit."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from pathlib import Path

import pytest

from gateway.store import Store

CHILD = Path(__file__).with_name("store_crash_child.py")
ROUNDS = 25
SEED = 20_240_611


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_acknowledged_writes_survive_repeated_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash" / "gateway.sqlite3"
    rng = random.Random(SEED)
    audit_ids: set[int] = set()
    user_ids: set[str] = set()
    most_failures = 0

    for round_no in range(ROUNDS):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            str(path),
            str(round_no),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        if ready != b"ready\n":
            proc.kill()
            await proc.wait()
            pytest.fail(f"round {round_no}: child did not start: {await proc.stderr.read()!r}")
        await asyncio.sleep(rng.uniform(0.0, 0.25))
        proc.kill()  # SIGKILL: no cleanup, no atexit, no flush
        output, errors = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"round {round_no}: child died: {errors!r}"

        # A line cut short by the kill was never a complete acknowledgement.
        for line in output.decode().split("\n")[:-1]:
            what, value = line.split(" ")
            if what == "audit":
                audit_ids.add(int(value))
            elif what == "user":
                user_ids.add(value)
            else:
                assert what == "throttle"
                most_failures = max(most_failures, int(value))

    assert len(audit_ids) > ROUNDS, "the child should have written something most rounds"

    async with await Store.open(path) as store:
        integrity = await store.db.fetch_all("PRAGMA integrity_check")
        assert [row["integrity_check"] for row in integrity] == ["ok"]
        assert await store.db.fetch_all("PRAGMA foreign_key_check") == []
        stored_audit = {
            int(row["id"]) for row in await store.db.fetch_all("SELECT id FROM audit_events")
        }
        stored_users = {str(row["id"]) for row in await store.db.fetch_all("SELECT id FROM users")}
        throttle = await store.throttle.get("crash")

    assert audit_ids - stored_audit == set(), "acknowledged audit events were lost"
    assert user_ids - stored_users == set(), "acknowledged users were lost"
    assert throttle is not None
    assert throttle.failures >= most_failures, "an acknowledged throttle update was lost"

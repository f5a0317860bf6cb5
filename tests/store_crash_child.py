"""Crash-test child: writes to the store in a loop, acknowledging each commit only once it returns.

Run as ``python store_crash_child.py DB_PATH ROUND``. Prints ``ready`` once the store is open, then
one line per committed write: ``audit <id>``, ``user <id>`` or ``throttle <failures>``. The
parent kills it with SIGKILL at a random moment and checks every acknowledged write survived.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from gateway.audit import Event
from gateway.store import Store, ThrottleState


@dataclass(frozen=True, kw_only=True)
class Tick(Event):
    kind = "crash.tick"
    round: int
    n: int


def _ack(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _increment(state: ThrottleState | None) -> ThrottleState:
    failures = state.failures if state is not None else 0
    return ThrottleState(failures=failures + 1, window_started_at=0.0, locked_until=0.0)


async def main(path: str, round_no: int) -> None:
    store = await Store.open(path)
    org = await store.organisations.find_by_name("Crash Test Pty Ltd")
    if org is None:
        org = await store.organisations.add(name="Crash Test Pty Ltd", now=0.0)
    _ack("ready")
    n = 0
    while True:
        n += 1
        event_id = await store.audit.record(Tick(round=round_no, n=n), at=float(n))
        _ack(f"audit {event_id}")
        user = await store.users.add(
            org_id=org.id,
            email=f"r{round_no}.n{n}@example.test",
            display_name=f"Round {round_no} number {n}",
            role="member",
            password_hash="$argon2id$not-a-real-hash",
            now=float(n),
        )
        _ack(f"user {user.id}")
        state = await store.throttle.update("crash", _increment)
        assert state is not None
        _ack(f"throttle {state.failures}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

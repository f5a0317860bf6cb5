"""Policy benchmarks: a warm (cached) decision, and the readiness report over a large user base."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.clock import ManualClock
from gateway.enforcement.decisions import Decider, PolicyBook
from gateway.enforcement.policy_files import apply_policies, load_policy_path
from gateway.policy import Facts, TenantFact
from gateway.policy.readiness import readiness
from gateway.signin.sessions import LiveSession
from gateway.store import Store
from gateway.store.records import SessionRecord, User

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 12, 1, tzinfo=UTC)
WARM_TARGET_US = 20.0
READINESS_TARGET_S = 5.0


async def warm_decision(iterations: int) -> float:
    """Median microseconds per decide_for on a cache hit, with the shipped policy in force."""
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "bench.sqlite3")
        clock = ManualClock(AT.timestamp())
        org = await store.organisations.add(name="Harbour", now=clock())
        await store.tenants.link(
            org_id=org.id, tenant_id="t-au", name="Harbour Pty", country_code="AU", now=clock()
        )
        user = await store.users.add(
            org_id=org.id,
            email="a@h.example",
            display_name="A",
            role="principal",
            password_hash="x",
            now=clock(),
        )
        await apply_policies(store, load_policy_path(ROOT / "policies"), now=clock(), by="bench")
        book = PolicyBook(store)
        await book.refresh()
        decider = Decider(book, store, clock)
        live = LiveSession(record=_record(user, clock()), user=user, last_seen=clock())
        await decider.decide_for(live)  # cold: loads the dismissal count, fills the cache
        statements = store.db.statement_count
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(iterations):
                await decider.decide_for(live)
            samples.append((time.perf_counter() - started) / iterations * 1e6)
        assert store.db.statement_count == statements, "a warm decision ran SQL"
        await store.close()
    return statistics.median(samples)


def _record(user: User, now: float) -> SessionRecord:
    return SessionRecord(
        id_hash="bench",
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + 3600,
        csrf_secret="x",
        client_addr=None,
        ended_at=None,
    )


def readiness_run(users: int, orgs: int) -> float:
    """Seconds for the readiness report over ``users`` spread across ``orgs`` organisations."""
    rng = random.Random(7)
    policies = load_policy_path(ROOT / "policies")
    countries = ["AU", "NZ", "GB", "US"]
    facts = {
        f"org_{n}": Facts(
            tenants=(TenantFact(tenant_id=f"t{n}", country=rng.choice(countries), active=True),)
        )
        for n in range(orgs)
    }
    rows = [
        (f"usr_{n}", f"org_{rng.randrange(orgs)}", "principal" if n % 10 == 0 else "member")
        for n in range(users)
    ]
    enrolled = {f"usr_{n}" for n in range(0, users, 3)}
    started = time.perf_counter()
    report = readiness(policies, rows, facts, enrolled, AT)
    elapsed = time.perf_counter() - started
    assert report[0].in_scope > 0
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=10_000)
    args = parser.parse_args()
    warm = asyncio.run(warm_decision(args.iterations))
    verdict = "met" if warm <= WARM_TARGET_US else "MISSED"
    print(f"warm decision (cache hit): {warm:.2f} µs  (target <= {WARM_TARGET_US} µs: {verdict})")
    seconds = readiness_run(args.users, args.orgs)
    verdict = "met" if seconds <= READINESS_TARGET_S else "MISSED"
    print(
        f"readiness report, {args.users:,} users in {args.orgs:,} organisations: {seconds:.3f} s"
        f"  (target <= {READINESS_TARGET_S} s: {verdict})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

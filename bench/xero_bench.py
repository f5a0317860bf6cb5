"""Xero listener benchmark: what the listener costs against a bare pass-through proxy to the
Xero emulator (same run), single-flight refresh under 1,000 concurrent calls, and Xero's
rate limits kept under 200 concurrent callers on one tenant.

See bench/README.md ("Xero listener benchmark"). Figures, not timed assertions: a missed
target is printed as MISSED; the script exits 1 only when a part could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from proxy_bench import (
    REPO_DIR,
    BenchFailure,
    Measurement,
    Options,
    Server,
    cpu_seconds,
    per_request_us,
    pick_load_generator,
    read_metrics,
    run_load,
    start_server,
    stop_all,
)
from xero_world import NO_LIMITS, TENANT, bench_config, lift_emulator_limits, open_world

sys.path.insert(0, str(REPO_DIR))  # the tests' manual time, for the rate-limit part

from gateway.runtime.xero_listener import xero_listener
from gateway.sandbox.xero_emulator import XeroEmulator
from tests.manual_time import ManualTime

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "xero.json"
PATH = "/api.xro/2.0/Organisation"
RPS_RATIO_TARGET = 0.85
REFRESH_CALLERS = 1000
RATE_CALLERS = 200


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--skip-throughput", action="store_true", help="only the refresh and rate-limit parts"
    )
    args = parser.parse_args(argv)
    opts = Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        rounds=args.rounds,
        loadgen=args.loadgen,
        output=args.output,
    )
    return opts, args


# -- 1. throughput on a warm connection ---------------------------------------------------


def _check(label: str, result: Measurement) -> None:
    if result.requests == 0:
        raise BenchFailure(f"{label}: no request completed")
    hard = result.errors.get("status", 0) + result.errors.get("connect", 0)
    if hard:
        raise BenchFailure(f"{label}: {result.errors} (non-2xx/3xx or connect errors)")


async def _one_run(
    opts: Options, gen: Any, server: Server, headers: list[str], label: str
) -> dict[str, Any]:
    if opts.warmup:
        await run_load(gen, server.url + PATH, opts.warmup, opts, headers)
    before = cpu_seconds(server)
    result = await run_load(gen, server.url + PATH, opts.duration, opts, headers)
    after = cpu_seconds(server)
    _check(label, result)
    return {
        "rps": result.rps,
        "p99_ms": result.p99_ms,
        "requests": result.requests,
        "cpu_us_per_request": per_request_us(before, after, result.requests),
    }


async def throughput(opts: Options, workdir: Path) -> dict[str, Any]:
    gen = pick_load_generator(opts.loadgen, workdir)
    if gen is None:
        raise BenchFailure("no load generator")
    limit = (opts.duration + opts.warmup) * opts.rounds * 2 + 300
    servers: list[Server] = []
    try:
        emulator = await start_server("xero-emulator", workdir, limit)
        servers.append(emulator)
        bare = await start_server("bare", workdir, limit, "--upstream", emulator.url)
        servers.append(bare)
        gateway = await start_server(
            "xero-gateway", workdir, limit, "--upstream", emulator.url, "--workdir", str(workdir)
        )
        servers.append(gateway)
        tenant = f"xero-tenant-id: {TENANT}"
        headers = {
            "bare": [f"Authorization: Bearer {gateway.extra['access_token']}", tenant],
            "listener": [f"Authorization: Bearer {gateway.extra['gateway_token']}", tenant],
        }
        targets = {"bare": bare, "listener": gateway}
        front = f"http://127.0.0.1:{gateway.extra['front']}"
        async with aiohttp.ClientSession() as session:
            for name, server in targets.items():
                auth, _ = headers[name]
                async with session.get(
                    server.url + PATH,
                    headers={"Authorization": auth.split(": ", 1)[1], "xero-tenant-id": TENANT},
                ) as answer:
                    if answer.status != 200:
                        raise BenchFailure(
                            f"{name} answered {answer.status}: {await answer.text()}"
                        )
            runs: dict[str, list[dict[str, Any]]] = {"bare": [], "listener": []}
            statements: list[float] = []
            for round_no in range(opts.rounds):
                order = ["bare", "listener"] if round_no % 2 == 0 else ["listener", "bare"]
                for name in order:
                    before = await read_metrics(session, front)
                    run = await _one_run(opts, gen, targets[name], headers[name], name)
                    after = await read_metrics(session, front)
                    if name == "listener":
                        spent = (
                            after["gateway_store_statements"] - before["gateway_store_statements"]
                        )
                        statements.append(spent / max(run["requests"], 1))
                    runs[name].append(run)
                    print(
                        f"  round {round_no + 1} {name:<8} {run['rps']:>9,.0f} req/s"
                        f"  p99 {run['p99_ms']:.2f} ms",
                        flush=True,
                    )
    finally:
        await stop_all(servers)
    ratios = [
        listener["rps"] / bare["rps"]
        for listener, bare in zip(runs["listener"], runs["bare"], strict=True)
    ]
    return {
        "load_generator": gen.kind,
        "bare_rps": statistics.median(r["rps"] for r in runs["bare"]),
        "listener_rps": statistics.median(r["rps"] for r in runs["listener"]),
        "ratio_by_round": ratios,
        "ratio": statistics.median(ratios),
        "ratio_target": RPS_RATIO_TARGET,
        "sql_statements_per_request": statistics.median(statements),
        "runs": runs,
    }


# -- 2. one refresh for 1,000 concurrent calls on an expired access token ------------------


async def refresh_once(workdir: Path) -> dict[str, Any]:
    """In one process on a manual clock: the emulator (limits lifted) and the gateway (its
    governor's too), the access token 30 s from its end, 1,000 calls at once."""
    time = ManualTime()
    async with XeroEmulator(clock=time.clock) as emulator:
        lift_emulator_limits(emulator)
        (workdir / "refresh").mkdir()
        config = bench_config(workdir / "refresh", emulator_url=emulator.url, app_url=emulator.url)
        world = await open_world(config, clock=time.clock, governor=NO_LIMITS)
        try:
            time.clock.set(world.grant.tokens.expires_at - 30)
            before = emulator.counters.token_endpoint_calls
            headers = {"Authorization": f"Bearer {world.gateway_token}", "xero-tenant-id": TENANT}
            connector = aiohttp.TCPConnector(limit=REFRESH_CALLERS)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def one() -> int:
                    async with http.get(world.listener_url + PATH, headers=headers) as answer:
                        await answer.read()
                        return answer.status

                statuses = Counter(await asyncio.gather(*(one() for _ in range(REFRESH_CALLERS))))
            calls = emulator.counters.token_endpoint_calls - before
        finally:
            await world.gateway.stop()
    return {
        "callers": REFRESH_CALLERS,
        "token_endpoint_calls": calls,
        "target": 1,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


# -- 3. 200 concurrent callers on one tenant, Xero's limits in force -----------------------


async def rate_limits(workdir: Path) -> dict[str, Any]:
    """In one process on a manual clock whose sleeps end as it is moved on: the emulator with
    Xero's limits, the listener with the governor as configured (callers may wait 600 s)."""
    time = ManualTime()
    async with XeroEmulator(clock=time.clock) as emulator:
        (workdir / "rates").mkdir()
        config = bench_config(
            workdir / "rates",
            emulator_url=emulator.url,
            app_url=emulator.url,
            max_wait=600.0,
            queue_size=RATE_CALLERS,  # every caller may wait: none is refused for a full queue
        )
        world = await open_world(config, clock=time.clock)
        listener = xero_listener(world.gateway.services, sleep=time.sleep, port=0)
        await listener.start()
        started = time.clock()
        try:
            headers = {"Authorization": f"Bearer {world.gateway_token}", "xero-tenant-id": TENANT}
            connector = aiohttp.TCPConnector(limit=RATE_CALLERS)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def one() -> tuple[int, str]:
                    async with http.get(listener.url + PATH, headers=headers) as answer:
                        body = await answer.read()
                        kind = ""
                        if answer.status == 429:
                            kind = json.loads(body).get("type", "xero") if body else "xero"
                        return answer.status, kind

                calls = [asyncio.create_task(one()) for _ in range(RATE_CALLERS)]
                for _ in range(10_000):
                    _, pending = await asyncio.wait(calls, timeout=0.05)
                    if not pending:
                        break
                    # Time moves only while no call is between the governor and Xero: the
                    # governor counts a call when it lets it go, the emulator when it arrives.
                    if listener.custody.governor.budget(TENANT).in_flight == 0:
                        await time.step(1.0)
                answers = [c.result() for c in calls]
        finally:
            await listener.stop()
            await world.gateway.stop()
        counters = emulator.counters
        return {
            "callers": RATE_CALLERS,
            "served": sum(1 for s, _ in answers if s == 200),
            "statuses": {str(k): v for k, v in sorted(Counter(s for s, _ in answers).items())},
            "429_to_callers": sum(1 for s, _ in answers if s == 429),
            "max_in_flight_at_xero": counters.max_in_flight[TENANT],
            "max_per_minute_at_xero": counters.max_per_minute[TENANT],
            "xero_429s": counters.rejections,
            "virtual_seconds": time.clock() - started,
        }


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


async def run(opts: Options, args: argparse.Namespace) -> int:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xero-bench-") as tmp:
        workdir = Path(tmp)
        if not args.skip_throughput:
            print("Throughput through the listener vs a bare proxy to the emulator:", flush=True)
            report["throughput"] = await throughput(opts, workdir)
        report["refresh"] = await refresh_once(workdir)
        report["rate_limits"] = await rate_limits(workdir)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print()
    if "throughput" in report:
        t = report["throughput"]
        rounds = ", ".join(f"{r:.2f}" for r in t["ratio_by_round"])
        print(f"  bare proxy {t['bare_rps']:,.0f} req/s, listener {t['listener_rps']:,.0f} req/s")
        print(
            f"  req/s ratio listener / bare   {t['ratio']:.3f}   target >= {RPS_RATIO_TARGET}"
            f"  {verdict(t['ratio'] >= RPS_RATIO_TARGET)}   (by round: {rounds})"
        )
        print(f"  SQL statements / warm request {t['sql_statements_per_request']:.5f}")
    r = report["refresh"]
    print(
        f"  token-endpoint calls for {r['callers']} concurrent calls on an expired token:"
        f" {r['token_endpoint_calls']}   target 1  {verdict(r['token_endpoint_calls'] == 1)}"
        f"   (answers {r['statuses']})"
    )
    q = report["rate_limits"]
    kept = q["max_in_flight_at_xero"] <= 5 and q["max_per_minute_at_xero"] <= 60
    print(
        f"  {q['callers']} callers on one tenant: at Xero max {q['max_in_flight_at_xero']} in"
        f" flight, {q['max_per_minute_at_xero']} a minute, {q['xero_429s']} 429s"
        f"  {verdict(kept and q['xero_429s'] == 0)};"
        f" 429s to callers who could wait: {q['429_to_callers']}"
        f"  {verdict(q['429_to_callers'] == 0)}"
        f"   (served {q['served']} in {q['virtual_seconds']:.0f} s of manual time)"
    )
    print(f"\nResults: {opts.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    try:
        return asyncio.run(run(opts, args))
    except BenchFailure as exc:
        print(f"xero_bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

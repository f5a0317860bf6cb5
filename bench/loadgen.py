"""Fallback closed-loop HTTP load generator (aiohttp client) for when wrk is not installed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from aiohttp import ClientSession, ClientTimeout, TCPConnector

# Printed before the one JSON line of results, in the same shape as the wrk script's.
MARKER = "BENCH_JSON "


class Tally:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.bytes = 0
        self.status_errors = 0
        self.other_errors = 0
        self.timeouts = 0


async def worker(
    session: ClientSession, url: str, headers: dict[str, str], deadline: float, tally: Tally
) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                body = await response.read()
        except TimeoutError:
            tally.timeouts += 1
            continue
        except OSError:
            tally.other_errors += 1
            await asyncio.sleep(0.01)
            continue
        tally.latencies_us.append((time.perf_counter() - started) * 1e6)
        tally.bytes += len(body)
        if response.status >= 400:
            tally.status_errors += 1


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(
    url: str, connections: int, duration: float, headers: dict[str, str]
) -> dict[str, object]:
    tally = Tally()
    connector = TCPConnector(limit=connections)
    timeout = ClientTimeout(total=5)
    async with ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(
            *(worker(session, url, headers, deadline, tally) for _ in range(connections))
        )
        elapsed = time.perf_counter() - started
    values = sorted(tally.latencies_us)
    return {
        "requests": len(values),
        "duration_us": int(elapsed * 1e6),
        "bytes": tally.bytes,
        "errors": {
            "connect": tally.other_errors,
            "read": 0,
            "write": 0,
            "status": tally.status_errors,
            "timeout": tally.timeouts,
        },
        "latency_us": {
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "p99": percentile(values, 99),
            "max": values[-1] if values else 0.0,
            "mean": sum(values) / len(values) if values else 0.0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args(argv)
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("only loopback URLs (http://127.0.0.1:PORT/...) are allowed")
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    result = asyncio.run(run(args.url, args.connections, args.duration, headers))
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Instructions per proxied request, gateway against a bare aiohttp proxy, counted by valgrind.

The req/s benchmark (proxy_bench.py) answers the question users ask, but on a shared
machine its figures move by 10-20 % from run to run, more than most single changes to the
hot path are worth. This one answers a narrower question the same way every time: how many
user-space instructions each proxy executes per warm request. Both proxies run under
valgrind's callgrind tool with instrumentation switched on only around the measured
requests; the same count of requests, at the same concurrency, goes to each.

Instructions are not time: a cache miss costs more than an add, and kernel time (the
sockets) is not counted at all. Use the ratio to tell whether a change to the hot path made
it cheaper or dearer, and proxy_bench.py for what a user would see.

Needs valgrind (Debian/Ubuntu: ``apt-get install -y valgrind``). Takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from proxy_bench import (
    BENCH_DIR,
    BENCH_PATH,
    BenchFailure,
    Server,
    sign_in,
    start_server,
    stop_server,
)

DEFAULT_OUTPUT = BENCH_DIR / "results" / "instructions.json"
TOTALS = re.compile(rb"^totals: (\d+)", re.MULTILINE)
# Python under callgrind runs some 50 times slower: starting the gateway takes a while.
START_TIMEOUT = 600.0


@dataclass(frozen=True)
class Count:
    role: str
    requests: int
    instructions: int
    seconds: float

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


async def load(url: str, cookie: str | None, requests: int, connections: int) -> None:
    """``requests`` GETs of the bench path, ``connections`` at a time; every one must be 200
    with the upstream's body (a gateway run must really be proxied, signed in)."""
    headers = {"Cookie": cookie} if cookie else {}
    limit = asyncio.Semaphore(connections)
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            async with limit, session.get(url, headers=headers, allow_redirects=False) as resp:
                body = await resp.read()
                if resp.status != 200 or not body.startswith(b"gateway-bench-"):
                    failures.append(f"{resp.status} {body[:80]!r}")

        await asyncio.gather(*(one() for _ in range(requests)))
    if failures:
        raise BenchFailure(f"{len(failures)} requests failed, e.g. {failures[0]}")


async def callgrind_control(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "callgrind_control",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        raise BenchFailure(f"callgrind_control {' '.join(args)} failed: {err.decode()}")


async def dumped_instructions(out_file: Path, seconds: float = 120.0) -> int:
    """The instruction total of the dump callgrind writes beside ``out_file`` (``.1``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for dump in out_file.parent.glob(out_file.name + ".*"):
            found = TOTALS.search(dump.read_bytes())
            if found:
                return int(found.group(1))
        await asyncio.sleep(0.5)
    raise BenchFailure("callgrind wrote no dump")


async def measure(
    role: str, server_args: tuple[str, ...], cookie: str | None, opts: argparse.Namespace
) -> Count:
    workdir = Path(tempfile.mkdtemp(prefix=f"gateway-instructions-{role}-"))
    out_file = workdir / "callgrind.out"
    wrapper = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # start-up and warm-up are not counted
        f"--callgrind-out-file={out_file}",
    )
    server: Server = await start_server(
        role, workdir, 3600, *server_args, wrapper=wrapper, start_timeout=START_TIMEOUT
    )
    try:
        url = server.url + BENCH_PATH
        await load(url, cookie, opts.warmup, opts.connections)
        pid = str(server.process.pid)
        await callgrind_control("--instr=on", pid)
        started = time.monotonic()
        await load(url, cookie, opts.requests, opts.connections)
        seconds = time.monotonic() - started
        await callgrind_control("--instr=off", pid)
        await callgrind_control("--dump", pid)
        instructions = await dumped_instructions(out_file)
    finally:
        await stop_server(server)
    return Count(role=role, requests=opts.requests, instructions=instructions, seconds=seconds)


async def run(opts: argparse.Namespace) -> int:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y valgrind", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="gateway-instructions-"))
    upstream = await start_server("upstream", workdir, 3600)
    try:
        # Seed the gateway's database and sign in at full speed; the measured gateway then
        # starts under callgrind on the same database and serves that session.
        seeding = await start_server(
            "gateway", workdir, 600, "--upstream", upstream.url, "--workdir", str(workdir)
        )
        try:
            cookie = await sign_in(seeding.url)
        finally:
            await stop_server(seeding)
        bare = await measure("bare", ("--upstream", upstream.url), None, opts)
        print(f"bare aiohttp proxy  {bare.per_request:>12,.0f} instructions/request", flush=True)
        gateway_args = ("--upstream", upstream.url, "--workdir", str(workdir), "--seeded")
        gateway = await measure("gateway", gateway_args, cookie, opts)
        print(f"gateway, signed in  {gateway.per_request:>12,.0f} instructions/request")
    finally:
        await stop_server(upstream)
    ratio = gateway.per_request / bare.per_request
    print(f"gateway / bare      {ratio:>12.3f}")
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "requests": opts.requests,
            "warmup": opts.warmup,
            "connections": opts.connections,
        },
        "counts": [asdict(bare), asdict(gateway)],
        "gateway_over_bare": round(ratio, 4),
    }
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Results written to {opts.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests each")
    parser.add_argument("--warmup", type=int, default=400, help="unmeasured requests first")
    parser.add_argument("--connections", type=int, default=32, help="requests at a time")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    opts = parser.parse_args(argv)
    try:
        return asyncio.run(run(opts))
    except BenchFailure as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

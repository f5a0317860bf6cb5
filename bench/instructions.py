"""Instructions per proxied request, gateway against a bare aiohttp proxy, counted by valgrind.

Two pairs: the front gateway against a bare proxy to the bench upstream, and the Xero
listener against a bare proxy to the Xero emulator (``--only front`` or ``--only xero``
runs one of them).

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
import dataclasses
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
from xero_world import TENANT as XERO_TENANT

DEFAULT_OUTPUT = BENCH_DIR / "results" / "instructions.json"
XERO_PATH = "/api.xro/2.0/Organisation"
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


@dataclass(frozen=True)
class Target:
    """What to send a measured server: the path, the headers, and bytes its answers hold."""

    path: str
    headers: dict[str, str]
    body_has: bytes


async def load(url: str, target: Target, requests: int, connections: int) -> None:
    """``requests`` GETs of ``url``, ``connections`` at a time; every one must be 200 with the
    expected body (a gateway run must really be proxied for the signed-in user)."""
    headers = target.headers
    limit = asyncio.Semaphore(connections)
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            async with limit, session.get(url, headers=headers, allow_redirects=False) as resp:
                body = await resp.read()
                if resp.status != 200 or target.body_has not in body:
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


async def start_counted(role: str, workdir: Path, *server_args: str) -> tuple[Server, Path]:
    """``role`` started under callgrind, counting nothing yet; and where its dump will go."""
    out_file = workdir / f"callgrind-{role}.out"
    wrapper = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # start-up and warm-up are not counted
        f"--callgrind-out-file={out_file}",
    )
    server = await start_server(
        role, workdir, 3600, *server_args, wrapper=wrapper, start_timeout=START_TIMEOUT
    )
    return server, out_file


async def count(
    role: str, server: Server, out_file: Path, target: Target, opts: argparse.Namespace
) -> Count:
    """Warm ``server`` up, count the instructions of the measured requests, stop it."""
    try:
        url = server.url + target.path
        await load(url, target, opts.warmup, opts.connections)
        pid = str(server.process.pid)
        await callgrind_control("--instr=on", pid)
        started = time.monotonic()
        await load(url, target, opts.requests, opts.connections)
        seconds = time.monotonic() - started
        await callgrind_control("--instr=off", pid)
        await callgrind_control("--dump", pid)
        instructions = await dumped_instructions(out_file)
    finally:
        await stop_server(server)
    return Count(role=role, requests=opts.requests, instructions=instructions, seconds=seconds)


async def measure(
    role: str, server_args: tuple[str, ...], target: Target, opts: argparse.Namespace
) -> Count:
    workdir = Path(tempfile.mkdtemp(prefix=f"gateway-instructions-{role}-"))
    server, out_file = await start_counted(role, workdir, *server_args)
    return await count(role, server, out_file, target, opts)


async def front_pair(workdir: Path, opts: argparse.Namespace) -> tuple[Count, Count]:
    """The bare proxy and the signed-in front gateway, each before the bench upstream."""
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
        plain = Target(path=BENCH_PATH, headers={}, body_has=b"gateway-bench-")
        bare = await measure("bare", ("--upstream", upstream.url), plain, opts)
        print(f"bare aiohttp proxy  {bare.per_request:>12,.0f} instructions/request", flush=True)
        gateway_args = ("--upstream", upstream.url, "--workdir", str(workdir), "--seeded")
        signed_in = dataclasses.replace(plain, headers={"Cookie": cookie})
        gateway = await measure("gateway", gateway_args, signed_in, opts)
        print(f"gateway, signed in  {gateway.per_request:>12,.0f} instructions/request")
    finally:
        await stop_server(upstream)
    print(f"gateway / bare      {gateway.per_request / bare.per_request:>12.3f}", flush=True)
    return bare, gateway


async def xero_pair(workdir: Path, opts: argparse.Namespace) -> tuple[Count, Count]:
    """The bare proxy with Xero's access token and the Xero listener with the verified
    session's gateway token, each before the Xero emulator (limits lifted on both sides),
    calling ``GET /api.xro/2.0/Organisation`` for the connected AU tenant."""
    emulator = await start_server("xero-emulator", workdir, 3600)
    try:
        # The listener's gateway connects the tenant at start-up; its access token then
        # serves the bare proxy's caller, measured after it.
        listener, out_file = await start_counted(
            "xero-gateway", workdir, "--upstream", emulator.url, "--workdir", str(workdir)
        )
        tokens = listener.extra
        tenant = {"xero-tenant-id": XERO_TENANT}
        through_listener = Target(
            path=XERO_PATH,
            headers={"Authorization": f"Bearer {tokens['gateway_token']}", **tenant},
            body_has=b"Organisations",
        )
        gateway = await count("xero-gateway", listener, out_file, through_listener, opts)
        print(f"Xero listener       {gateway.per_request:>12,.0f} instructions/request", flush=True)
        bare_target = dataclasses.replace(
            through_listener,
            headers={"Authorization": f"Bearer {tokens['access_token']}", **tenant},
        )
        bare = await measure("bare", ("--upstream", emulator.url), bare_target, opts)
    finally:
        await stop_server(emulator)
    print(f"bare proxy to Xero  {bare.per_request:>12,.0f} instructions/request")
    print(f"listener / bare     {gateway.per_request / bare.per_request:>12.3f}", flush=True)
    return bare, gateway


async def run(opts: argparse.Namespace) -> int:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y valgrind", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="gateway-instructions-"))
    for pair in ("front", "xero"):
        (workdir / pair).mkdir()
    report: dict[str, object] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "requests": opts.requests,
            "warmup": opts.warmup,
            "connections": opts.connections,
        },
    }
    if opts.only in (None, "front"):
        bare, gateway = await front_pair(workdir / "front", opts)
        report["counts"] = [asdict(bare), asdict(gateway)]
        report["gateway_over_bare"] = round(gateway.per_request / bare.per_request, 4)
    if opts.only in (None, "xero"):
        bare, listener = await xero_pair(workdir / "xero", opts)
        report["xero_counts"] = [asdict(bare), asdict(listener)]
        report["xero_listener_over_bare"] = round(listener.per_request / bare.per_request, 4)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Results written to {opts.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests each")
    parser.add_argument("--warmup", type=int, default=400, help="unmeasured requests first")
    parser.add_argument("--connections", type=int, default=32, help="requests at a time")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--only", choices=("front", "xero"), help="one pair: the front gateway or the Xero listener"
    )
    opts = parser.parse_args(argv)
    try:
        return asyncio.run(run(opts))
    except BenchFailure as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

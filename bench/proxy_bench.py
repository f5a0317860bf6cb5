"""Gateway req/s and latency as ratios against a bare aiohttp proxy measured in the same run."""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
from yarl import URL

from gateway.runtime.background import REFRESH_SECONDS

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
HOST = "127.0.0.1"  # every server and every request stays on loopback
BENCH_PATH = "/bench"
BENCH_USER = "max@harbour.example"  # a member in the AU policy's scope: no backup needed
TOTP_KEY = re.compile(r'id="totp-key" class="key">([A-Z2-7 ]+)<')
BODY_SIZE = 1024
MARKER = "BENCH_JSON "

RPS_RATIO_TARGET = 0.85  # gateway req/s / bare proxy req/s, at least
P99_DELTA_TARGET_MS = 1.0  # gateway p99 - bare proxy p99, at most
# One write-behind flush of session last-use times: BEGIN IMMEDIATE, UPDATE, COMMIT.
FLUSH_STATEMENTS = 3
POLL_STATEMENTS = 1  # gateway.runtime.background: one change-marks query per REFRESH_SECONDS tick
# A single-process server under saturating load should keep one CPU busy; less means it
# was waiting for a CPU that something else held, which skews that run.
STARVED_BELOW = 0.85
# Gateway outcomes that mean the measured requests did not reach the app as a signed-in user.
BAD_OUTCOMES = ("login_redirect", "unauthenticated", "upstream_error", "rejected", "error")

TARGETS = ("upstream", "bare", "gateway")
LABELS = {
    "upstream": "upstream direct",
    "bare": "bare aiohttp proxy",
    "gateway": "gateway, signed in",
}

# wrk calls done() once at the end; it prints one JSON line in the shape loadgen.py prints.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

WRK_INSTALL_HINT = (
    "install wrk for trustworthy figures: `sudo apt-get install -y wrk` (Debian/Ubuntu), "
    "`brew install wrk` (macOS)"
)

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
METRIC_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)")


class BenchFailure(Exception):
    """A server did not start, died, or answered wrongly: no figure of the run can be trusted."""


@dataclass(frozen=True, kw_only=True)
class Options:
    duration: int
    warmup: int
    connections: int
    threads: int
    rounds: int
    loadgen: str
    output: Path


@dataclass(frozen=True, kw_only=True)
class Measurement:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    # CPU time per completed request of the server under load, and of the upstream behind it
    # (None where /proc is not readable): less sensitive to CPU sharing than req/s is.
    cpu_us_per_request: float | None = None
    upstream_cpu_us_per_request: float | None = None
    # Share of one CPU the server under load used: well under 1 for a single-process proxy
    # means something else on the machine took the CPU it could have used.
    cpu_busy: float | None = None

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> Measurement:
        seconds = report["duration_us"] / 1e6
        lat = report["latency_us"]
        return cls(
            requests=int(report["requests"]),
            seconds=seconds,
            rps=report["requests"] / seconds if seconds > 0 else 0.0,
            p50_ms=lat["p50"] / 1000,
            p90_ms=lat["p90"] / 1000,
            p99_ms=lat["p99"] / 1000,
            max_ms=lat["max"] / 1000,
            errors={k: int(v) for k, v in report["errors"].items()},
        )


@dataclass(frozen=True, kw_only=True)
class StatementWindow:
    """SQL statements the gateway ran while one measurement of it lasted."""

    statements: int
    measured_requests: int
    proxied: int
    seconds: float
    flush_allowance: int


@dataclass(frozen=True, kw_only=True)
class LoadGenerator:
    kind: str  # "wrk" or "python"
    description: str
    executable: str
    script: Path

    def command(self, url: str, seconds: int, opts: Options, headers: list[str]) -> list[str]:
        if self.kind == "wrk":
            cmd = [
                self.executable,
                f"-t{opts.threads}",
                f"-c{opts.connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-s",
                str(self.script),
            ]
            for header in headers:
                cmd += ["-H", header]
            return [*cmd, url]
        cmd = [
            self.executable,
            str(self.script),
            url,
            "--connections",
            str(opts.connections),
            "--duration",
            str(seconds),
        ]
        for header in headers:
            cmd += ["--header", header]
        return cmd


@dataclass(kw_only=True)
class Server:
    role: str
    process: asyncio.subprocess.Process
    log_path: Path
    port: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="Every server listens on 127.0.0.1 only; all of them stop when the run ends.",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk, the Python fallback, or wrk when installed (default)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    args = parser.parse_args(argv)
    for name in ("duration", "connections", "threads", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections")
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        rounds=args.rounds,
        loadgen=args.loadgen,
        output=args.output,
    )


def pick_load_generator(choice: str, workdir: Path) -> LoadGenerator | None:
    wrk = shutil.which("wrk")
    if wrk is not None and choice in ("auto", "wrk"):
        script = workdir / "report.lua"
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        return LoadGenerator(kind="wrk", description="wrk", executable=wrk, script=script)
    if choice == "wrk":
        print(f"proxy_bench: wrk is not installed; {WRK_INSTALL_HINT}.", file=sys.stderr)
        return None
    if choice == "auto":
        print(
            f"proxy_bench: wrk not found, falling back to the Python load generator.\n"
            f"  It competes with the servers for the CPU and saturates first, so the ratios\n"
            f"  come out closer to 1 than they are; {WRK_INSTALL_HINT}.",
            file=sys.stderr,
        )
    return LoadGenerator(
        kind="python",
        description="python aiohttp client (bench/loadgen.py)",
        executable=sys.executable,
        script=BENCH_DIR / "loadgen.py",
    )


async def wrk_version(gen: LoadGenerator) -> str:
    if gen.kind != "wrk":
        return gen.description
    proc = await asyncio.create_subprocess_exec(
        gen.executable,
        "-v",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    first = out.decode(errors="replace").strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- servers ------------------------------------------------------------------------------


async def start_server(
    role: str,
    workdir: Path,
    max_seconds: float,
    *args: str,
    wrapper: tuple[str, ...] = (),
    start_timeout: float = 60.0,
) -> Server:
    """Start ``servers.py role`` (behind ``wrapper``, a command such as valgrind, if given)
    and wait for its READY line."""
    log_path = workdir / f"{role}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_DIR), env.get("PYTHONPATH")) if p)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *wrapper,
            sys.executable,
            str(BENCH_DIR / "servers.py"),
            role,
            "--max-seconds",
            str(int(max_seconds)),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches only us; we stop them
        )
    server = Server(role=role, process=process, log_path=log_path)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), start_timeout)
    except TimeoutError:
        line = b""
    words = line.decode(errors="replace").split()
    if len(words) < 2 or words[0] != "READY":
        await stop_server(server)
        raise BenchFailure(f"the {role} server did not start:\n{server.log_tail()}")
    server.port = int(words[1])
    server.extra = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    return server


async def stop_server(server: Server) -> None:
    process = server.process
    if process.returncode is None:
        try:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)
        except ProcessLookupError:
            pass
        except TimeoutError:
            process.kill()
            await process.wait()


async def stop_all(servers: list[Server]) -> None:
    # Shielded so that a second Ctrl-C cannot leave a child behind half-way through.
    await asyncio.shield(asyncio.gather(*(stop_server(s) for s in servers)))


def cpu_seconds(server: Server) -> float | None:
    """User plus system CPU time the server's process has used, from /proc (Linux only)."""
    try:
        stat = Path(f"/proc/{server.process.pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state) of proc(5)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_request_us(before: float | None, after: float | None, requests: int) -> float | None:
    if before is None or after is None or requests <= 0:
        return None
    return (after - before) / requests * 1e6


def busy(before: float | None, after: float | None, seconds: float) -> float | None:
    if before is None or after is None or seconds <= 0:
        return None
    return round((after - before) / seconds, 3)


def ensure_alive(servers: list[Server]) -> None:
    for server in servers:
        if server.process.returncode is not None:
            raise BenchFailure(
                f"the {server.role} server exited with status {server.process.returncode}:\n"
                f"{server.log_tail()}"
            )


async def explain(servers: list[Server], exc: BaseException) -> str:
    """A refused or broken connection usually means a server died: name it if one did."""
    await asyncio.sleep(0.5)  # give the child watcher time to notice an exit
    try:
        ensure_alive(servers)
    except BenchFailure as dead:
        return str(dead)
    return f"a request to a bench server failed: {exc!r}"


# -- HTTP checks --------------------------------------------------------------------------


async def fetch_bench(
    session: aiohttp.ClientSession, base: str, cookie: str | None = None
) -> tuple[int, bytes]:
    headers = {"Cookie": cookie} if cookie else {}
    async with session.get(base + BENCH_PATH, headers=headers, allow_redirects=False) as resp:
        return resp.status, await resp.read()


async def sign_in(gateway_url: str) -> str:
    """Sign in once and set up an authenticator app through the pages, so the measured
    session is MFA-verified (the user in scope, enrolled, the decision ALLOW); returns the
    Cookie header value for the session."""
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies for an IP host (the login nonce)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=gateway_url, cookie_jar=jar, timeout=timeout) as s:
        async with s.get("/_gateway/login", params={"next": BENCH_PATH}) as page:
            text = await page.text()
        form = {
            "email": BENCH_USER,
            "password": demo_password(),
            "csrf": _csrf_field(page.status, text, "the sign-in page"),
            "next": BENCH_PATH,
        }
        async with s.post("/_gateway/login", data=form, allow_redirects=False) as resp:
            status = resp.status
            cookies = {name: morsel.value for name, morsel in resp.cookies.items()}
        if status != 303 or not any(k.endswith("gw-session") and v for k, v in cookies.items()):
            raise BenchFailure(f"sign-in answered {status} and set cookies {sorted(cookies)}")
        await _enrol_authenticator(s)
        session_cookies = {
            name: morsel.value
            for name, morsel in jar.filter_cookies(URL(gateway_url)).items()
            if name.endswith("gw-session")
        }
    name, value = next(iter(session_cookies.items()))
    return f"{name}={value}"


def _csrf_field(status: int, text: str, what: str) -> str:
    match = CSRF_FIELD.search(text)
    if status != 200 or match is None:
        raise BenchFailure(f"{what} answered {status} without a CSRF field")
    return html.unescape(match.group(1))


async def _enrol_authenticator(s: aiohttp.ClientSession) -> None:
    """Choose the authenticator app, read its key from the page, confirm with its code, skip
    the backup method (offered, not required, for a member) and finish."""
    async with s.get("/_gateway/mfa/enrol") as page:
        csrf = _csrf_field(page.status, await page.text(), "the set-up page")
    data = {"csrf": csrf, "next": BENCH_PATH}
    async with s.post("/_gateway/mfa/enrol/totp", data=data) as page:
        text = await page.text()
    key = TOTP_KEY.search(text)
    if key is None:
        raise BenchFailure(f"the authenticator page answered {page.status} without a key")
    code = pyotp.TOTP(key.group(1).replace(" ", "")).now()
    data = {"csrf": _csrf_field(page.status, text, "the authenticator page"), "code": code}
    async with s.post("/_gateway/mfa/enrol/totp/confirm", data=data) as confirmed:
        status, text = confirmed.status, await confirmed.text()
    if status == 200 and "recovery-codes" not in text:
        # Where codes can be sent, a member is offered a backup method and may skip it, as
        # the bench user does.
        data = {"csrf": _csrf_field(status, text, "the backup page"), "next": BENCH_PATH}
        async with s.post("/_gateway/mfa/enrol/finish", data=data) as done:
            status, text = done.status, await done.text()
    if status != 200 or "recovery-codes" not in text:
        raise BenchFailure(f"finishing the set-up answered {status}")


def demo_password() -> str:
    from gateway.sandbox.demo import DEMO_PASSWORD

    return DEMO_PASSWORD


async def check_servers(session: aiohttp.ClientSession, servers: dict[str, Server]) -> str:
    """Each target serves the same body; the gateway refuses a stranger. Returns the cookie."""
    status, body = await fetch_bench(session, servers["upstream"].url)
    if status != 200 or len(body) != BODY_SIZE:
        raise BenchFailure(f"the upstream answered {status} with {len(body)} bytes")
    bare_status, bare_body = await fetch_bench(session, servers["bare"].url)
    if bare_status != 200 or bare_body != body:
        raise BenchFailure(f"the bare proxy answered {bare_status} with {len(bare_body)} bytes")
    anon_status, _ = await fetch_bench(session, servers["gateway"].url)
    if anon_status != 401:
        raise BenchFailure(f"the gateway answered {anon_status} to a request without a session")
    cookie = await sign_in(servers["gateway"].url)
    gw_status, gw_body = await fetch_bench(session, servers["gateway"].url, cookie)
    if gw_status != 200 or gw_body != body:
        raise BenchFailure(f"the gateway answered {gw_status} with {len(gw_body)} bytes signed in")
    return cookie


async def read_metrics(session: aiohttp.ClientSession, gateway_url: str) -> dict[str, float]:
    """The gateway's Prometheus text as {'name{labels}': value}."""
    async with session.get(gateway_url + "/_gateway/metrics") as resp:
        if resp.status != 200:
            raise BenchFailure(f"/_gateway/metrics answered {resp.status}")
        text = await resp.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match and not line.startswith("#"):
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    if "gateway_store_statements" not in values:
        raise BenchFailure("/_gateway/metrics has no gateway_store_statements")
    return values


def outcome(values: dict[str, float], name: str) -> float:
    return values.get(f'gateway_requests_total{{outcome="{name}"}}', 0.0)


# -- load ---------------------------------------------------------------------------------


async def run_load(
    gen: LoadGenerator, url: str, seconds: int, opts: Options, headers: list[str]
) -> Measurement:
    cmd = gen.command(url, seconds, opts, headers)
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(MARKER):
            return Measurement.from_report(json.loads(line[len(MARKER) :]))
    raise BenchFailure(
        f"the load generator ({gen.kind}) gave no result, status {proc.returncode}:\n"
        f"{err.decode(errors='replace')[-2000:]}"
    )


async def measure(
    opts: Options,
    gen: LoadGenerator,
    servers: dict[str, Server],
    session: aiohttp.ClientSession,
    cookie: str,
) -> tuple[dict[str, list[Measurement]], list[StatementWindow]]:
    results: dict[str, list[Measurement]] = {role: [] for role in TARGETS}
    windows: list[StatementWindow] = []
    flush_seconds = float(servers["gateway"].extra.get("flush_seconds", "15"))
    every = list(servers.values())
    for index in range(opts.rounds):
        # The two proxies run back to back in every round, so each gateway run has a bare run
        # taken under the same machine conditions (see paired_ratios); which of them goes
        # first alternates, so neither always follows the upstream's own run.
        order = (
            ("upstream", "bare", "gateway") if index % 2 == 0 else ("upstream", "gateway", "bare")
        )
        for role in order:
            url = servers[role].url + BENCH_PATH
            headers = [f"Cookie: {cookie}"] if role == "gateway" else []
            if opts.warmup:
                await run_load(gen, url, opts.warmup, opts, headers)
                await asyncio.sleep(0.5)  # let the last in-flight requests finish
            ensure_alive(every)
            before = await read_metrics(session, servers["gateway"].url)
            cpu_before = cpu_seconds(servers[role]), cpu_seconds(servers["upstream"])
            started = time.monotonic()
            result = await run_load(gen, url, opts.duration, opts, headers)
            await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
            cpu_after = cpu_seconds(servers[role]), cpu_seconds(servers["upstream"])
            after = await read_metrics(session, servers["gateway"].url)
            result = replace(
                result,
                cpu_us_per_request=per_request_us(cpu_before[0], cpu_after[0], result.requests),
                # Direct runs load the upstream itself: no separate upstream figure.
                upstream_cpu_us_per_request=None
                if role == "upstream"
                else per_request_us(cpu_before[1], cpu_after[1], result.requests),
                cpu_busy=busy(cpu_before[0], cpu_after[0], result.seconds),
            )
            ensure_alive(every)
            check_errors(role, result)
            if role == "gateway":
                windows.append(statement_window(before, after, result, elapsed, flush_seconds))
            else:
                # Traffic to the other targets must not touch the gateway at all.
                if outcome(after, "proxied") != outcome(before, "proxied"):
                    raise BenchFailure(f"the gateway proxied requests during the {role} run")
            results[role].append(result)
            print(
                f"  round {index + 1}/{opts.rounds}  {LABELS[role]:<20} "
                f"{result.rps:>10,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                f"p99 {result.p99_ms:6.2f} ms  CPU {fmt_busy(result.cpu_busy)}",
                flush=True,
            )
    return results, windows


def check_errors(role: str, result: Measurement) -> None:
    if result.requests == 0:
        raise BenchFailure(f"{LABELS[role]}: no request completed")
    hard = result.errors.get("status", 0) + result.errors.get("connect", 0)
    if hard:
        raise BenchFailure(f"{LABELS[role]}: {result.errors} (non-2xx/3xx or connect errors)")


def statement_window(
    before: dict[str, float],
    after: dict[str, float],
    result: Measurement,
    seconds: float,
    flush_seconds: float,
) -> StatementWindow:
    bad = {name: outcome(after, name) - outcome(before, name) for name in BAD_OUTCOMES}
    if any(bad.values()):
        raise BenchFailure(f"the gateway did not pass measured requests through: {bad}")
    proxied = int(outcome(after, "proxied") - outcome(before, "proxied"))
    if proxied < result.requests:
        raise BenchFailure(f"the gateway proxied {proxied} of {result.requests} requests")
    # The flusher wakes every flush_seconds and the change poll every refresh_seconds, whatever
    # the traffic: time-driven statements, not per-request ones, so a window is allowed them.
    ticks = math.floor(seconds / flush_seconds) + 1
    polls = math.floor(seconds / REFRESH_SECONDS) + 1
    return StatementWindow(
        statements=int(after["gateway_store_statements"] - before["gateway_store_statements"]),
        measured_requests=result.requests,
        proxied=proxied,
        seconds=round(seconds, 3),
        flush_allowance=ticks * FLUSH_STATEMENTS + polls * POLL_STATEMENTS,
    )


# -- report -------------------------------------------------------------------------------


def median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


@dataclass(frozen=True, kw_only=True)
class Medians:
    """Each figure's median over the rounds of one target (taken separately, not one run)."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_us_per_request: float | None
    upstream_cpu_us_per_request: float | None

    @classmethod
    def of(cls, runs: list[Measurement]) -> Medians:
        return cls(
            rps=statistics.median(m.rps for m in runs),
            p50_ms=statistics.median(m.p50_ms for m in runs),
            p90_ms=statistics.median(m.p90_ms for m in runs),
            p99_ms=statistics.median(m.p99_ms for m in runs),
            cpu_us_per_request=median_or_none([m.cpu_us_per_request for m in runs]),
            upstream_cpu_us_per_request=median_or_none(
                [m.upstream_cpu_us_per_request for m in runs]
            ),
        )


def summarise(
    opts: Options,
    loadgen: str,
    servers: dict[str, Server],
    results: dict[str, list[Measurement]],
    windows: list[StatementWindow],
    load_at_start: list[float] | None,
) -> dict[str, Any]:
    medians = {role: Medians.of(runs) for role, runs in results.items()}
    gw, bare = medians["gateway"], medians["bare"]
    pairs = list(zip(results["gateway"], results["bare"], strict=True))
    by_round = [g.rps / b.rps for g, b in pairs]
    p99_by_round = [g.p99_ms - b.p99_ms for g, b in pairs]
    # The checks use the median of the per-round (paired) figures: a gateway run and the
    # bare run of its round are seconds apart, whereas the machine's own speed drifts over
    # minutes (the bare proxy's CPU per request has moved by half between runs here), and a
    # ratio of medians taken from different rounds would carry that drift into the result.
    ratio = statistics.median(by_round)
    p99_delta = statistics.median(p99_by_round)
    statements = sum(w.statements for w in windows)
    requests = sum(w.proxied for w in windows)
    allowance = sum(w.flush_allowance for w in windows)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notes": [
            "Compare the ratios, not absolute req/s: the bare proxy ran in the same run, on"
            " the same machine, with the same load, so machine speed and noise cancel out.",
            "The gateway logs at WARNING, so its per-request access log (INFO) is off.",
            "cpu_us_per_request is the CPU time (from /proc) of the server under load divided"
            " by its requests: less sensitive than req/s to how the CPUs were shared.",
        ],
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "platform": platform.platform(),
        },
        "settings": {
            "load_generator": loadgen,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "connections": opts.connections,
            "threads": opts.threads if loadgen.startswith("wrk") else 1,
            "rounds": opts.rounds,
            "body_bytes": BODY_SIZE,
            "gateway_log_level": servers["gateway"].extra.get("log_level", "WARNING"),
            "statistic": (
                "figures per target: median over rounds; checks: median over rounds of the"
                " gateway's figure against the bare proxy's in the same round (paired)"
            ),
        },
        "targets": {
            role: {
                "label": LABELS[role],
                "median": asdict(medians[role]),
                "rounds": [asdict(m) for m in runs],
            }
            for role, runs in results.items()
        },
        "ratios": {
            "gateway_rps_over_bare": round(ratio, 4),
            "gateway_rps_over_bare_by_round": [round(r, 4) for r in by_round],
            "gateway_rps_over_bare_of_medians": round(gw.rps / bare.rps, 4),
            "bare_rps_over_upstream": round(bare.rps / medians["upstream"].rps, 4),
            "gateway_p99_minus_bare_ms": round(p99_delta, 3),
            "gateway_p99_minus_bare_ms_by_round": [round(d, 3) for d in p99_by_round],
            "gateway_p99_minus_bare_ms_of_medians": round(gw.p99_ms - bare.p99_ms, 3),
            "gateway_cpu_over_bare": (
                round(gw.cpu_us_per_request / bare.cpu_us_per_request, 4)
                if gw.cpu_us_per_request and bare.cpu_us_per_request
                else None
            ),
        },
        "store": {
            "statements": statements,
            "proxied_requests": requests,
            "statements_per_request": statements / requests if requests else None,
            "write_behind_allowance": allowance,
            "windows": [asdict(w) for w in windows],
        },
        "checks": {
            "rps_ratio": {
                "value": ratio,
                "target": f">= {RPS_RATIO_TARGET}",
                "met": ratio >= RPS_RATIO_TARGET,
            },
            "p99_delta_ms": {
                "value": p99_delta,
                "target": f"<= {P99_DELTA_TARGET_MS}",
                "met": p99_delta <= P99_DELTA_TARGET_MS,
            },
            "statements_per_warm_request": {
                "value": statements / requests if requests else None,
                "target": "0 (only the write-behind flush, which does not grow with traffic)",
                "met": statements <= allowance,
            },
        },
    }


def starved_runs(report: dict[str, Any]) -> list[str]:
    """Proxy runs whose proxy (one process, saturated by wrk) did not get most of a CPU.

    Direct runs are left out: there wrk itself is the bottleneck, not the upstream. So are
    runs with the Python load generator, which cannot saturate the proxies.
    """
    found: list[str] = []
    if not report["settings"]["load_generator"].startswith("wrk"):
        return found
    for role in ("bare", "gateway"):
        for number, run in enumerate(report["targets"][role]["rounds"], start=1):
            cpu = run.get("cpu_busy")
            if cpu is not None and cpu < STARVED_BELOW:
                found.append(f"{LABELS[role]} round {number}: {cpu:.2f}")
    return found


def fmt_busy(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} core"


def fmt_us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_report(report: dict[str, Any], output: Path) -> None:
    settings = report["settings"]
    print()
    print(
        f"Load: {settings['load_generator']} ({settings['connections']} connections, "
        f"{settings['duration_s']} s per run, {settings['warmup_s']} s warm-up before each), "
        f"{settings['rounds']} round(s), median shown; GET {BENCH_PATH}, {BODY_SIZE}-byte body; "
        f"{report['machine']['cpus']} CPUs; every server in its own process."
    )
    print(
        f"Gateway logging level: {settings['gateway_log_level']} (per-request access log off, "
        "as in the demo; an INFO access log would cost extra)."
    )
    print()
    print(
        f"{'target':<22}{'req/s':>9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
        f"{'CPU us/req':>12}{'upstream':>10}   req/s by round"
    )
    for role in TARGETS:
        target = report["targets"][role]
        med = target["median"]
        by_round = " / ".join(f"{r['rps']:,.0f}" for r in target["rounds"])
        print(
            f"{target['label']:<22}{med['rps']:>9,.0f}{med['p50_ms']:>8.2f}"
            f"{med['p90_ms']:>8.2f}{med['p99_ms']:>8.2f}"
            f"{fmt_us(med['cpu_us_per_request']):>12}"
            f"{fmt_us(med['upstream_cpu_us_per_request']):>10}   {by_round}"
        )
    ratios, checks, store = report["ratios"], report["checks"], report["store"]
    by_round = ", ".join(f"{r:.2f}" for r in ratios["gateway_rps_over_bare_by_round"])
    print()
    print("Gateway against the bare proxy, same run (the figures that matter):")
    rps = checks["rps_ratio"]
    print(
        f"  req/s ratio gateway / bare    {rps['value']:>8.3f}    target >= {RPS_RATIO_TARGET:<5}"
        f" {verdict(rps['met'])}   (by round: {by_round};"
        f" ratio of the medians {ratios['gateway_rps_over_bare_of_medians']:.3f})"
    )
    p99 = checks["p99_delta_ms"]
    p99_by_round = ", ".join(f"{d:+.2f}" for d in ratios["gateway_p99_minus_bare_ms_by_round"])
    print(
        f"  p99 gateway - bare            {p99['value']:>+8.3f} ms"
        f" target <= {P99_DELTA_TARGET_MS} ms  {verdict(p99['met'])}"
        f"   (by round: {p99_by_round};"
        f" of the medians {ratios['gateway_p99_minus_bare_ms_of_medians']:+.2f})"
    )
    sql = checks["statements_per_warm_request"]
    per = sql["value"] if sql["value"] is not None else 0.0
    print(
        f"  SQL statements / warm request {per:>8.5f}    target 0         {verdict(sql['met'])}"
        f"   ({store['statements']} statements in {store['proxied_requests']:,} requests;"
        f" the 15 s write-behind flush and the 2 s change poll may add up to"
        f" {store['write_behind_allowance']})"
    )
    cpu_ratio = ratios["gateway_cpu_over_bare"]
    print(
        f"  (also: bare proxy / upstream direct req/s {ratios['bare_rps_over_upstream']:.3f};"
        f" gateway / bare CPU per request "
        f"{'n/a' if cpu_ratio is None else format(cpu_ratio, '.2f')})"
    )
    starved = starved_runs(report)
    if starved:
        print()
        print(
            f"Noise: in {len(starved)} run(s) the server under load got less than"
            f" {STARVED_BELOW:.0%} of a CPU ({', '.join(starved)}); something else on the"
            " machine was busy, so those runs' req/s and latency are worse than they should be."
        )
    print()
    print(f"Results written to {output}")


# -- main ---------------------------------------------------------------------------------


async def run(opts: Options) -> int:
    # SIGTERM stops the run as Ctrl-C does: cancel, so every finally below stops the servers.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        workdir = Path(tmp)
        gen = pick_load_generator(opts.loadgen, workdir)
        if gen is None:
            return 2
        loadgen = await wrk_version(gen)
        if gen.kind == "wrk":
            loadgen = f"{loadgen} -t{opts.threads} -c{opts.connections} -d{opts.duration}s"
        load_at_start = load_average()
        per_run = opts.warmup + opts.duration + 5
        max_seconds = 180 + opts.rounds * len(TARGETS) * per_run
        servers: list[Server] = []
        try:
            upstream = await start_server("upstream", workdir, max_seconds)
            servers.append(upstream)
            started = await asyncio.gather(
                start_server("bare", workdir, max_seconds, "--upstream", upstream.url),
                start_server(
                    "gateway",
                    workdir,
                    max_seconds,
                    "--upstream",
                    upstream.url,
                    "--workdir",
                    str(workdir / "gateway"),
                ),
                return_exceptions=True,
            )
            for item in started:
                if isinstance(item, Server):
                    servers.append(item)
            for item in started:
                if isinstance(item, BaseException):
                    raise item
            by_role = {s.role: s for s in servers}
            print(
                f"Servers up on {HOST}: upstream :{by_role['upstream'].port}, "
                f"bare proxy :{by_role['bare'].port}, gateway :{by_role['gateway'].port} "
                f"(each in its own process)",
                flush=True,
            )
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                cookie = await check_servers(session, by_role)
                print(f"Signed in as {BENCH_USER}, 2FA verified; measuring...", flush=True)
                results, windows = await measure(opts, gen, by_role, session, cookie)
            report = summarise(opts, loadgen, by_role, results, windows, load_at_start)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            print(f"\nproxy_bench: FAILED: {await explain(servers, exc)}", file=sys.stderr)
            return 1
        except BenchFailure as exc:
            print(f"\nproxy_bench: FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            await stop_all(servers)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_report(report, opts.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        return asyncio.run(run(opts))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nproxy_bench: interrupted; servers stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

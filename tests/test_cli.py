"""The `xero-gateway` command run as a user would, against a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pyotp
import pytest

from gateway.audit import LoginThrottled
from gateway.sandbox.demo import DEMO_PASSWORD
from gateway.store import LATEST_VERSION, Store
from gateway.web.api_guard import API

SECRET = "cli-secret-key-long-enough-for-the-check-123"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "state/gw.sqlite3"\n'
        f'[security]\nsecret_key = "{SECRET}"\ncookie_secure = false\n'
    )
    return path


def run(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


GOOD_PASSWORD = "a-long-enough-password"


def add_user(
    config: Path, org: str, email: str, *, password: str = GOOD_PASSWORD
) -> subprocess.CompletedProcess[str]:
    return run(
        config,
        "user",
        "add",
        "--org",
        org,
        "--email",
        email,
        "--name",
        "U",
        "--password-stdin",
        stdin=f"{password}\n",
    )


def test_org_and_user_commands_round_trip(config_file: Path) -> None:
    added = run(config_file, "org", "add", "Harbour Accounting")
    assert added.returncode == 0, added.stderr
    org_id = added.stdout.strip()
    assert org_id.startswith("org_")
    user = run(
        config_file,
        "user",
        "add",
        "--org",
        "Harbour Accounting",
        "--email",
        "Ava@Harbour.example",
        "--name",
        "Ava",
        "--role",
        "principal",
        "--password-stdin",
        stdin="a-long-enough-password\n",
    )
    assert user.returncode == 0, user.stderr
    listing = run(config_file, "user", "list")
    assert "ava@harbour.example" in listing.stdout
    assert "principal" in listing.stdout
    assert "Harbour Accounting" in listing.stdout


def test_user_add_refuses_a_short_password(config_file: Path) -> None:
    run(config_file, "org", "add", "Harbour")
    result = add_user(config_file, "Harbour", "a@b.example", password="short")
    assert result.returncode == 2
    assert "password must be at least 12 characters" in result.stderr


def test_duplicate_organisation_is_an_error(config_file: Path) -> None:
    assert run(config_file, "org", "add", "Harbour").returncode == 0
    result = run(config_file, "org", "add", "Harbour")
    assert result.returncode == 1
    assert result.stderr.startswith("xero-gateway: ")


def test_csv_import_is_all_or_nothing(config_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "org,email,name,role\nHarbour,a@h.example,A,principal\nHarbour,not-an-email,B,member\n"
    )
    result = run(config_file, "user", "import", str(bad), "--create-orgs")
    assert result.returncode == 1
    assert "line 3: 'not-an-email' is not an email address" in result.stderr
    assert "a@h.example" not in run(config_file, "user", "list").stdout

    good = tmp_path / "good.csv"
    good.write_text(
        "org,email,name,role,password\n"
        "Harbour,a@h.example,A,principal,a-long-enough-password\n"
        "Harbour,b@h.example,B,member,\n"
    )
    result = run(config_file, "user", "import", str(good), "--create-orgs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "email,password"
    assert result.stdout.splitlines()[1].startswith("b@h.example,")
    listing = run(config_file, "user", "list").stdout
    assert "a@h.example" in listing
    assert "b@h.example" in listing


def test_audit_export_writes_one_json_object_per_event(config_file: Path) -> None:
    run(config_file, "org", "add", "Harbour")
    result = run(config_file, "audit", "export")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["kind"] for e in events] == ["org.added"]
    assert events[0]["detail"] == {"name": "Harbour"}


def test_migrate_reports_the_schema_version(config_file: Path) -> None:
    result = run(config_file, "migrate")
    assert result.returncode == 0
    assert f"schema version {LATEST_VERSION}" in result.stdout


@contextlib.contextmanager
def running_demo(
    tmp_path: Path, *extra: str, welcome: list[str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start `xero-gateway demo` on a free port; yields the process and its URL, once it has
    printed its welcome (into ``welcome``, if given)."""
    exe = shutil.which("xero-gateway") or str(Path(sys.executable).parent / "xero-gateway")
    proc = subprocess.Popen(
        [exe, "demo", "--port", "0", "--workdir", str(tmp_path / "demo"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if welcome is not None:
                welcome.append(line.rstrip("\n"))
            if line.strip().startswith("Open http://"):
                url = line.split()[1].rstrip("/")
            if line.strip() == "Press Ctrl-C to stop.":
                break
        assert url, "the demo did not print its URL"
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_serves_and_stops_cleanly_on_interrupt(tmp_path: Path) -> None:
    with running_demo(tmp_path) as (proc, url):
        with urllib.request.urlopen(f"{url}/_gateway/health", timeout=10) as response:  # noqa: S310
            assert json.load(response)["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_the_demo_writes_a_config_for_the_cli_and_audits_its_set_up(tmp_path: Path) -> None:
    welcome: list[str] = []
    with running_demo(tmp_path, welcome=welcome) as (proc, url):
        config = tmp_path / "demo" / "gateway.toml"
        assert f"    export XERO_GATEWAY_CONFIG={config}" in welcome
        assert "ava@harbour.example" in run(config, "user", "list").stdout
        token = run(config, "admin-token", "create", "--name", "t", "--scope", "admin").stdout
        curl = next(line for line in welcome if line.strip().startswith("curl "))
        readiness = re.search(r'"(http://[^"]+)"$', curl)
        assert readiness is not None
        assert readiness[1] == f"{url}/_gateway/admin/api/reports/readiness?at=2026-12-01"
        request = urllib.request.Request(  # noqa: S310 - loopback
            readiness[1], headers={"Authorization": f"Bearer {token.strip()}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert json.load(response)["policies"][0]["policy_id"] == "au-ato-2fa"
        events = [json.loads(line) for line in run(config, "audit", "export").stdout.splitlines()]
        # Both organisations were connected through the emulated Xero at start.
        status = run(config, "xero", "status")
        assert status.returncode == 0, status.stderr
        assert any(" AU " in line and "active" in line for line in status.stdout.splitlines())
        assert any(" NZ " in line and "active" in line for line in status.stdout.splitlines())
        assert any(line.strip().startswith("Xero is emulated at http://") for line in welcome)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    by_demo = [e["kind"] for e in events if e["actor"] == "demo"]
    assert by_demo == [*["org.added"] * 2, *["user.added"] * 4, "policy.created"]
    # The tenants were linked by the principals' consents, read from Xero: not typed in.
    connected = [e for e in events if e["kind"] == "xero.connected"]
    assert len(connected) == 2
    linked = [e for e in events if e["kind"] == "org.tenant_linked"]
    assert [e["actor"] for e in linked] == [e["actor"] for e in connected]


async def test_demo_at_a_later_date_shows_the_blocked_state(tmp_path: Path) -> None:
    welcome: list[str] = []
    with running_demo(tmp_path, "--at", "2027-01-05", welcome=welcome) as (_, url):
        # A plain date is read in the shipped policy's zone, and shown in it.
        assert any(
            line.strip().startswith("Demo time: 2027-01-05T00:00+11:00 (Australia/Sydney).")
            for line in welcome
        )
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            page = await (await client.get(f"{url}/_gateway/login")).text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf
            await client.post(
                f"{url}/_gateway/login",
                data={"email": "max@harbour.example", "password": DEMO_PASSWORD, "csrf": csrf[1]},
                allow_redirects=False,
            )
            au = await client.get(f"{url}/", headers={"Accept": "text/html"}, allow_redirects=False)
            assert au.headers["Location"] == "/_gateway/mfa/blocked?next=/"
            # The date moves policies only: an authenticator app's code, made now, is taken.
            me = await (await client.get(f"{url}{API}/me")).json()
            token = {"X-CSRF-Token": me["csrf_token"]}
            setup = await (await client.post(f"{url}{API}/mfa/enrol/totp", headers=token)).json()
            totp = pyotp.TOTP(setup["key"].replace(" ", ""))
            confirmed = await client.post(
                f"{url}{API}/mfa/enrol/totp/confirm", json={"code": totp.now()}, headers=token
            )
            assert confirmed.status == 200, await confirmed.text()
            finished = await client.post(f"{url}{API}/mfa/enrol/finish", headers=token)
            assert finished.status == 201
            assert (await client.get(f"{url}/api/whoami")).status == 200


ROOT = Path(__file__).resolve().parent.parent


def test_policy_lint_passes_the_shipped_policy(config_file: Path) -> None:
    result = run(config_file, "policy", "lint", str(ROOT / "policies/au-ato-2fa.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("au-ato-2fa.toml: ok")


def test_policy_lint_reports_errors_with_file_and_line_and_warnings(
    config_file: Path, tmp_path: Path
) -> None:
    text = (ROOT / "policies/au-ato-2fa.toml").read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace('countries = ["AU"]', 'countries = ["AU", "XX"]'))
    loose = tmp_path / "loose.toml"
    loose.write_text(text.replace('remember_device = "23h"', 'remember_device = "30d"'))
    result = run(config_file, "policy", "lint", str(broken), str(loose))
    assert result.returncode == 1
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("countries ="))
    assert f"error: {broken}:{line}: scope.countries:" in result.stderr
    assert "XX" in result.stderr
    assert f"warning: {loose}: windows.remember_device:" in result.stderr
    strict = run(config_file, "policy", "lint", "--strict", str(loose))
    assert strict.returncode == 1


def test_policy_apply_is_idempotent_and_keeps_the_old_set_on_bad_input(
    config_file: Path, tmp_path: Path
) -> None:
    first = run(config_file, "policy", "apply", str(ROOT / "policies"))
    again = run(config_file, "policy", "apply", str(ROOT / "policies"))
    assert first.stdout.split() == ["created", "au-ato-2fa", "(revision", "1)"]
    assert again.stdout.split() == ["unchanged", "au-ato-2fa", "(revision", "1)"]
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "policies/au-ato-2fa.toml").read_text().replace("[methods]", "[method]"))
    failed = run(config_file, "policy", "apply", str(bad))
    assert failed.returncode == 1
    assert "method" in failed.stderr
    shown = json.loads(run(config_file, "policy", "show", "au-ato-2fa").stdout)
    assert shown["revision"] == 1
    assert shown["document"]["methods"]["primary"] == ["sms", "totp"]


def test_policy_simulate_counts_who_would_be_blocked(config_file: Path) -> None:
    run(config_file, "org", "add", "Harbour")
    run(config_file, "org", "add", "Kauri")
    assert (
        run(
            config_file,
            "org",
            "link-tenant",
            "Harbour",
            "--tenant-id",
            "t-au",
            "--name",
            "Harbour Pty",
            "--country",
            "AU",
        ).returncode
        == 0
    )
    run(
        config_file,
        "org",
        "link-tenant",
        "Kauri",
        "--tenant-id",
        "t-nz",
        "--name",
        "K",
        "--country",
        "NZ",
    )
    for org, email in (
        ("Harbour", "a@h.example"),
        ("Harbour", "b@h.example"),
        ("Kauri", "c@k.example"),
    ):
        add_user(config_file, org, email)
    run(config_file, "policy", "apply", str(ROOT / "policies"))
    result = run(config_file, "policy", "simulate", "--at", "2026-12-01")
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [r[2:] for r in rows] == [["Harbour", "2", "0", "2"], ["(all)", "2", "0", "2"]]
    only_kauri = run(config_file, "policy", "simulate", "--at", "2026-12-01", "--org", "Kauri")
    assert only_kauri.stdout.splitlines() == [
        "As of 2026-12-01, read in each policy's time zone:",
        "No policy applies to the users of Kauri.",
    ]


def test_link_tenant_refuses_an_unknown_country(config_file: Path) -> None:
    run(config_file, "org", "add", "Harbour")
    result = run(
        config_file,
        "org",
        "link-tenant",
        "Harbour",
        "--tenant-id",
        "t",
        "--name",
        "n",
        "--country",
        "XX",
    )
    assert result.returncode == 2
    assert "not an ISO 3166-1 alpha-2 code" in result.stderr


def test_serve_refuses_a_clock_override(config_file: Path) -> None:
    result = run(config_file, "serve", "--at", "2027-01-05")
    assert result.returncode == 2
    assert "unrecognized arguments: --at" in result.stderr


def test_admin_token_is_printed_once_listed_without_secret_and_revoked(
    config_file: Path,
) -> None:
    created = run(
        config_file,
        "admin-token",
        "create",
        "--name",
        "ops",
        "--scope",
        "policies:read",
        "--scope",
        "reports:read",
        "--days",
        "7",
    )
    assert created.returncode == 0, created.stderr
    raw = created.stdout.strip()
    assert raw.startswith("xgw_")
    token_id = created.stderr.split()[0]
    listing = run(config_file, "admin-token", "list").stdout
    assert token_id in listing
    assert "policies:read,reports:read" in listing
    assert raw not in listing
    assert run(config_file, "admin-token", "revoke", token_id).returncode == 0
    assert "revoked" in run(config_file, "admin-token", "list").stdout
    kinds = [
        json.loads(line)["kind"] for line in run(config_file, "audit", "export").stdout.split()
    ]
    assert kinds == ["admin_token.created", "admin_token.revoked"]


def test_admin_token_with_an_unknown_scope_is_refused(config_file: Path) -> None:
    result = run(config_file, "admin-token", "create", "--name", "x", "--scope", "root")
    assert result.returncode == 2
    assert "invalid choice: 'root'" in result.stderr


def test_disabling_a_user_ends_their_sessions_and_is_audited(config_file: Path) -> None:
    run(config_file, "org", "add", "Harbour")
    run(
        config_file,
        "user",
        "add",
        "--org",
        "Harbour",
        "--email",
        "a@h.example",
        "--name",
        "A",
        "--password-stdin",
        stdin="a-long-enough-password\n",
    )
    assert run(config_file, "user", "disable", "A@H.example").stdout == "disabled a@h.example\n"
    assert "disabled" in run(config_file, "user", "list").stdout
    assert run(config_file, "user", "enable", "a@h.example").returncode == 0
    assert "active" in run(config_file, "user", "list").stdout
    missing = run(config_file, "user", "disable", "nobody@h.example")
    assert missing.returncode == 1  # not found, as for every other unknown name
    assert missing.stderr == "xero-gateway: no user has the email 'nobody@h.example'\n"
    kinds = [
        json.loads(line)["kind"] for line in run(config_file, "audit", "export").stdout.split()
    ]
    assert kinds[-2:] == ["user.disabled", "user.enabled"]


def test_commands_on_the_store_need_no_secret_key(tmp_path: Path) -> None:
    keyless = tmp_path / "keyless.toml"
    keyless.write_text('[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "gw.sqlite3"\n')
    assert run(keyless, "org", "add", "Harbour").returncode == 0
    listed = run(keyless, "org", "list")
    assert listed.returncode == 0, listed.stderr
    assert "Harbour" in listed.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(keyless)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert checked.returncode == 2  # serving does need it
    assert "security.secret_key: is required" in checked.stderr


def test_check_config_refuses_a_store_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "nowhere/gw.sqlite3"\n'
        f'[security]\nsecret_key = "{SECRET}"\n'
    )
    result = run(path, "check-config", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"config: store.path: the folder {tmp_path / 'nowhere'} does not exist;"
        " create it or fix the path\n"
    )
    (tmp_path / "nowhere").mkdir()
    assert run(path, "check-config", str(path)).returncode == 0


def test_user_import_of_a_missing_file_says_so_without_a_traceback(
    config_file: Path, tmp_path: Path
) -> None:
    result = run(config_file, "user", "import", str(tmp_path / "missing.csv"))
    assert result.returncode == 1
    assert result.stderr == (
        f"xero-gateway: cannot read {tmp_path / 'missing.csv'}: No such file or directory\n"
    )


async def _record_events(path: Path, count: int) -> None:
    async with await Store.open(path) as store:
        for n in range(count):
            await store.audit.record(LoginThrottled(typed=f"{n:064d}"), at=float(n))


def test_audit_export_into_a_closed_pipe_stops_quietly(config_file: Path) -> None:
    # About 150 bytes a line: far more than a pipe's buffer holds.
    asyncio.run(_record_events(config_file.parent / "state/gw.sqlite3", 1000))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "--config",
            str(config_file),
            "audit",
            "export",
            "--format",
            "csv",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("id,at,kind")
    proc.stdout.close()  # as `| head -1` does
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (141, "")


def test_user_add_refuses_an_address_that_is_not_an_email(config_file: Path) -> None:
    run(config_file, "org", "add", "Harbour")
    result = add_user(config_file, "Harbour", "not-an-email")
    assert result.returncode == 2
    assert result.stderr == "xero-gateway: --email: 'not-an-email' is not an email address\n"
    assert "not-an-email" not in run(config_file, "user", "list").stdout


def test_an_unknown_organisation_is_reported_by_name_or_id(config_file: Path) -> None:
    result = run(config_file, "user", "list", "--org", "Nowhere")
    assert result.returncode == 1
    assert result.stderr == "xero-gateway: no organisation has the name or id 'Nowhere'\n"


def test_admin_token_scopes_may_follow_one_flag(config_file: Path) -> None:
    created = run(
        config_file,
        "admin-token",
        "create",
        "--name",
        "ops",
        "--scope",
        "audit:read",
        "reports:read",
        "--scope",
        "orgs:write",
    )
    assert created.returncode == 0, created.stderr
    listing = run(config_file, "admin-token", "list").stdout
    assert "audit:read,orgs:write,reports:read" in listing


def test_policy_lint_takes_a_folder_as_apply_does(config_file: Path, tmp_path: Path) -> None:
    shipped = run(config_file, "policy", "lint", str(ROOT / "policies"))
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout == f"{ROOT / 'policies/au-ato-2fa.toml'}: ok\n"
    folder = tmp_path / "policies"
    folder.mkdir()
    for name in ("a.toml", "b.toml"):
        shutil.copy(ROOT / "policies/au-ato-2fa.toml", folder / name)
    twice = run(config_file, "policy", "lint", str(folder))
    assert twice.returncode == 1
    assert f"error: {folder / 'b.toml'}: id 'au-ato-2fa' is also used by" in twice.stderr


def test_user_import_with_new_organisations_audits_every_account(
    config_file: Path, tmp_path: Path
) -> None:
    users = tmp_path / "users.csv"
    users.write_text(
        "org,email,name,role\nHarbour,a@h.example,A,principal\nHarbour,b@h.example,B,member\n"
    )
    assert run(config_file, "user", "import", str(users), "--create-orgs").returncode == 0
    events = [json.loads(line) for line in run(config_file, "audit", "export").stdout.split()]
    assert [e["kind"] for e in events] == ["org.added", "user.added", "user.added", "user.imported"]
    org_id = events[0]["subject"]
    assert events[0]["detail"] == {"name": "Harbour"}
    added = {e["detail"]["email"]: e["subject"] for e in events[1:3]}
    assert sorted(added) == ["a@h.example", "b@h.example"]
    assert events[3]["detail"] == {
        "count": 2,
        "users": [
            {"id": added["a@h.example"], "email": "a@h.example", "org_id": org_id},
            {"id": added["b@h.example"], "email": "b@h.example", "org_id": org_id},
        ],
    }

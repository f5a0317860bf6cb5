"""The `xero-gateway` command run as a user would, against a real SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

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
    result = run(
        config_file,
        "user",
        "add",
        "--org",
        "Harbour",
        "--email",
        "a@b.example",
        "--name",
        "A",
        "--password-stdin",
        stdin="short\n",
    )
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
    assert "schema version 2" in result.stdout


def test_demo_serves_and_stops_cleanly_on_interrupt(tmp_path: Path) -> None:
    exe = shutil.which("xero-gateway") or str(Path(sys.executable).parent / "xero-gateway")
    proc = subprocess.Popen(
        [exe, "demo", "--port", "0", "--workdir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if line.strip().startswith("Open http://"):
                url = line.split()[1].rstrip("/")
                break
        assert url, "the demo did not print its URL"
        with urllib.request.urlopen(f"{url}/_gateway/health", timeout=10) as response:  # noqa: S310
            assert json.load(response)["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

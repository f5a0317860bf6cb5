"""`xero-gateway reminders run` in a subprocess: a dry run lists what is due and claims nothing."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import ROOT, add_user, config_file, run

__all__ = ["config_file"]  # the fixture, shared with the CLI tests


def _setup(config: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    text = (
        (ROOT / "policies/au-ato-2fa.toml")
        .read_text()
        .replace("requires_xero_connection = true", "requires_xero_connection = false")
    )
    policy.write_text(text)
    assert run(config, "org", "add", "Harbour").returncode == 0
    assert add_user(config, "Harbour", "max@harbour.example").returncode == 0
    applied = run(config, "policy", "apply", str(policy))
    assert applied.returncode == 0, applied.stderr


def test_a_dry_run_lists_what_is_due_and_claims_nothing(config_file: Path, tmp_path: Path) -> None:
    _setup(config_file, tmp_path)
    for _ in range(2):  # nothing claimed: the same again
        dry = run(config_file, "reminders", "run", "--dry-run", "--at", "2026-12-24T09:00+11:00")
        assert dry.returncode == 0, dry.stderr
        lines = dry.stdout.splitlines()
        assert len(lines) == 2
        assert lines[0].split()[:3] == ["due", "reminder", "max@harbour.example"]
        assert lines[0].endswith("Set up two-factor authentication: 7 days left")
        assert lines[1] == "1 due (dry run: nothing sent, nothing claimed)"
    early = run(config_file, "reminders", "run", "--dry-run", "--at", "2026-12-17T08:59+11:00")
    assert early.stdout.splitlines() == ["0 due (dry run: nothing sent, nothing claimed)"]


def test_a_real_run_needs_email_and_the_present(config_file: Path, tmp_path: Path) -> None:
    _setup(config_file, tmp_path)
    real = run(config_file, "reminders", "run")
    assert real.returncode == 2
    assert "no email delivery is set up" in real.stderr
    moved = run(config_file, "reminders", "run", "--at", "2026-12-24")
    assert moved.returncode == 2
    assert "--at needs --dry-run" in moved.stderr

"""`xero-gateway admin add|list|disable`: gateway admins, apart from users and admin tokens."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.store import Store
from tests.test_cli import config_file, run

__all__ = ["config_file"]

PASSWORD = "a long admin passphrase"


def test_add_prints_the_seed_once_list_shows_no_secret_and_disable_is_audited(
    config_file: Path,
) -> None:
    added = run(config_file, "admin", "add", "Olive@GW.example", "--name", "Olive Ops",
                stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    uri = re.search(r"otpauth://totp/[^\s]*olive%40gw\.example\?secret=([A-Z2-7]+)", added.stdout)
    assert uri is not None
    assert re.search(r"key: ([A-Z2-7]{4} ){7}[A-Z2-7]{4}", added.stdout)

    listed = run(config_file, "admin", "list")
    assert listed.returncode == 0, listed.stderr
    assert "olive@gw.example" in listed.stdout
    assert "active" in listed.stdout
    assert uri[1] not in listed.stdout

    twice = run(config_file, "admin", "add", "olive@gw.example", "--name", "Again",
                stdin=PASSWORD + "\n")  # fmt: skip
    assert twice.returncode == 1
    assert "exists already" in twice.stderr

    disabled = run(config_file, "admin", "disable", "OLIVE@gw.example")
    assert disabled.returncode == 0, disabled.stderr
    assert "disabled" in run(config_file, "admin", "list").stdout
    unknown = run(config_file, "admin", "disable", "nobody@gw.example")
    assert unknown.returncode == 1
    assert "no admin" in unknown.stderr

    exported = run(config_file, "audit", "export").stdout
    assert '"kind":"admin.added"' in exported
    assert '"kind":"admin.disabled"' in exported
    assert PASSWORD not in exported
    assert uri[1] not in exported


async def test_add_reads_a_password_file_and_stores_the_seed_sealed(
    config_file: Path, tmp_path: Path
) -> None:
    secret_file = tmp_path / "password.txt"
    secret_file.write_text(PASSWORD + "\n")
    added = run(config_file, "admin", "add", "ops@gw.example", "--name", "Ops",
                "--password-file", str(secret_file))  # fmt: skip
    assert added.returncode == 0, added.stderr
    uri = re.search(r"secret=([A-Z2-7]+)", added.stdout)
    assert uri is not None
    async with await Store.open(tmp_path / "state" / "gw.sqlite3") as store:
        row = await store.db.fetch_one("SELECT totp_secret, password_hash FROM admins")
    assert row is not None
    assert uri[1] not in row["totp_secret"]
    assert row["password_hash"].startswith("$argon2id$")


def test_bad_input_is_refused_and_nothing_is_added(config_file: Path, tmp_path: Path) -> None:
    short = run(config_file, "admin", "add", "ops@gw.example", "--name", "Ops", stdin="short\n")
    assert short.returncode == 2
    assert "password" in short.stderr
    bad_email = run(config_file, "admin", "add", "not-an-email", "--name", "Ops",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert bad_email.returncode == 2
    no_file = run(config_file, "admin", "add", "ops@gw.example", "--name", "Ops",
                  "--password-file", str(tmp_path / "missing"))  # fmt: skip
    assert no_file.returncode == 2
    assert "--password-file" in no_file.stderr
    assert "ops@gw.example" not in run(config_file, "admin", "list").stdout

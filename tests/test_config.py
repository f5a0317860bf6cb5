"""The config file: every problem reported at once, secrets from three places, documented keys."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from gateway.config import SECTIONS, build_config, load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s" * 40
MINIMAL = {"upstream": {"url": "http://127.0.0.1:5000"}, "security": {"secret_key": SECRET}}


def problems_of(raw: Mapping[str, object], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(raw, env=env or {})
    return info.value.problems


def test_minimal_config_takes_the_defaults() -> None:
    config = build_config(MINIMAL, env={})
    assert config.server.port == 8080
    assert config.session.idle_timeout_minutes == 30
    assert config.session.absolute_timeout_hours == 12
    assert config.security.cookie_secure is True
    assert config.xero.token_url == "https://identity.xero.com/connect/token"
    assert config.security.totp_issuer == "Xero Gateway"


def test_every_problem_is_reported_at_once_with_its_key() -> None:
    problems = problems_of(
        {
            "server": {"port": 70000, "bogus": 1},
            "upstream": {"url": "ftp://x", "read_timeout": "soon"},
            "security": {"cookie_secure": "yes", "trusted_proxies": ["not-an-ip"]},
            "extra": {},
        }
    )
    assert problems == [
        "extra: unknown section",
        "server.bogus: unknown key",
        "server.port: must be a port number from 0 to 65535",
        "upstream.url: must be an http:// or https:// URL",
        "upstream.read_timeout: must be a number",
        "security.secret_key: is required (set it, or secret_key_file, or env"
        " XERO_GATEWAY_SECRET_KEY)",
        "security.cookie_secure: must be true or false",
        "security.trusted_proxies: 'not-an-ip' is not an IP address or network",
    ]


@pytest.mark.parametrize(
    ("section", "value", "problem"),
    [
        ("server", {"max_body_size": 0}, "server.max_body_size: must be greater than zero"),
        ("server", {"port": True}, "server.port: must be a whole number"),
        ("upstream", {"public_paths": ["/_gateway/x"]}, "upstream.public_paths: '/_gateway/x'"),
        ("upstream", {"public_paths": "/x"}, "upstream.public_paths: must be a list of strings"),
        ("logging", {"format": "xml"}, "logging.format: must be one of json, text"),
        ("security", {"secret_key": "short"}, "security.secret_key: must be at least 32"),
        ("security", {"totp_issuer": "Acme: Books"}, "security.totp_issuer: must be 1 to 64"),
        ("security", {"totp_issuer": " "}, "security.totp_issuer: must be 1 to 64"),
        ("security", {"totp_issuer": "Acme\x00"}, "security.totp_issuer: must be printable"),
        ("store", [], "store: must be a table ([store])"),
    ],
)
def test_bad_values_are_named(section: str, value: object, problem: str) -> None:
    raw: dict[str, object] = {**MINIMAL, section: value}
    if section == "security" and isinstance(value, dict):
        raw[section] = value
    found = problems_of(raw)
    assert any(p.startswith(problem) for p in found), found


def test_secret_comes_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(SECRET + "\n")
    config = build_config(
        {"upstream": MINIMAL["upstream"], "security": {"secret_key_file": "key"}},
        env={},
        base=tmp_path,
    )
    assert config.security.secret_key == SECRET


def test_secret_comes_from_the_environment() -> None:
    config = build_config(
        {"upstream": MINIMAL["upstream"]}, env={"XERO_GATEWAY_SECRET_KEY": SECRET}
    )
    assert config.security.secret_key == SECRET


def test_a_printed_config_shows_no_secret() -> None:
    secrets = {
        "security": {**MINIMAL["security"], "previous_secret_keys": ["q" * 36]},
        "xero": {"client_secret": "xero-client-secret-value"},
        "sms": {"api_key": "sms-api-key-value"},
        "email": {"password": "smtp-password-value"},
    }
    config = build_config({**MINIMAL, **secrets}, env={})
    shown = repr(config)
    assert "127.0.0.1:5000" in shown  # the rest is shown as before
    for hidden in (SECRET, "q" * 36, "xero-client-secret-value", "sms-api-key-value"):
        assert hidden not in shown
    assert "smtp-password-value" not in shown


OLD_KEYS = ["o" * 32, "p" * 40]


def test_previous_secret_keys_come_inline_from_a_file_or_from_the_environment(
    tmp_path: Path,
) -> None:
    inline = build_config(
        {**MINIMAL, "security": {"secret_key": SECRET, "previous_secret_keys": OLD_KEYS}}, env={}
    )
    (tmp_path / "old").write_text("\n".join(OLD_KEYS) + "\n\n")
    from_file = build_config(
        {**MINIMAL, "security": {"secret_key": SECRET, "previous_secret_keys_file": "old"}},
        env={},
        base=tmp_path,
    )
    from_env = build_config(
        MINIMAL, env={"XERO_GATEWAY_PREVIOUS_SECRET_KEYS": " \n".join(OLD_KEYS)}
    )
    for config in (inline, from_file, from_env):
        assert config.security.previous_secret_keys == tuple(OLD_KEYS)
    assert build_config(MINIMAL, env={}).security.previous_secret_keys == ()


def test_a_short_previous_secret_key_is_refused_without_showing_it() -> None:
    problems = problems_of(
        {**MINIMAL, "security": {"secret_key": SECRET, "previous_secret_keys": ["a" * 32, "tiny"]}}
    )
    assert problems == [
        "security.previous_secret_keys: key 2 must be at least 32 characters,"
        " as secret_key had to be"
    ]
    assert problems_of(
        {**MINIMAL, "security": {"secret_key": SECRET, "previous_secret_keys": "x" * 40}}
    ) == ["security.previous_secret_keys: must be a list of strings"]


def test_a_secret_given_twice_is_refused() -> None:
    problems = problems_of(MINIMAL, env={"XERO_GATEWAY_SECRET_KEY": SECRET})
    assert problems[0].startswith("security.secret_key: set in more than one place")


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    problems = problems_of(
        {"upstream": MINIMAL["upstream"], "security": {"secret_key_file": str(tmp_path / "no")}}
    )
    assert problems[0].startswith("security.secret_key_file: cannot read")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(f"{path}: not valid TOML")


def test_store_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[upstream]\nurl = "http://127.0.0.1:1"\n[store]\npath = "var/db.sqlite3"\n')
    config = load_config(path, env={"XERO_GATEWAY_SECRET_KEY": SECRET})
    assert config.store.path == str(tmp_path / "var/db.sqlite3")


def test_example_config_documents_every_setting() -> None:
    text = (ROOT / "config.example.toml").read_text()
    sections = re.split(r"^\[(\w+)\]\s*$", text, flags=re.M)
    documented = {name: body for name, body in zip(sections[1::2], sections[2::2], strict=True)}
    missing = []
    for name, cls in SECTIONS.items():
        body = documented.get(name, "")
        for field in dataclasses.fields(cls):
            if not re.search(rf"^#?\s*{field.name}\s*=", body, flags=re.M):
                missing.append(f"{name}.{field.name}")
    assert missing == []


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.toml", env={"XERO_GATEWAY_SECRET_KEY": SECRET})
    assert config.upstream.url == "http://127.0.0.1:5000"


def test_check_config_exits_2_with_one_line_per_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nport = "x"\nnope = 1\n[upstream]\nurl = ""\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "config: server.nope: unknown key",
        "config: server.port: must be a whole number",
        "config: upstream.url: is required",
        "config: security.secret_key: is required (set it, or secret_key_file, or env"
        " XERO_GATEWAY_SECRET_KEY)",
    ]

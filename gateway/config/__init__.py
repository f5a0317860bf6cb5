"""The gateway's configuration: TOML in, frozen dataclasses out, every problem reported at once."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.checks import XERO_TIERS, Check, setting
from gateway.config.sections import (
    SECTIONS,
    AdminConfig,
    Config,
    EmailConfig,
    LoggingConfig,
    SecurityConfig,
    ServerConfig,
    SessionConfig,
    SmsConfig,
    StoreConfig,
    ThrottleConfig,
    UpstreamConfig,
    XeroConfig,
    XeroProxyConfig,
)
from gateway.errors import ConfigError


def _coerce(kind: Any, value: Any) -> tuple[Any, str | None]:
    """Check a TOML value against a field's type; return the value to store, or a problem."""
    if kind is bool:
        return value, None if isinstance(value, bool) else "must be true or false"
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value, None if ok else "must be a whole number"
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), None
        return value, "must be a number"
    if kind is str:
        return value, None if isinstance(value, str) else "must be a string"
    if typing.get_origin(kind) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value), None
        return value, "must be a list of strings"
    raise TypeError(f"unsupported setting type {kind!r}")  # a programming error, not user input


def _read_secret_file(path: str, base: Path) -> tuple[str, str | None]:
    full = (base / path).expanduser()
    try:
        return full.read_text(encoding="utf-8").strip(), None
    except OSError as exc:
        return "", f"cannot read {full}: {exc.strerror or exc}"


def _secret_value(kind: Any, text: str) -> str | list[str]:
    """A secret read from a file or the environment: a list of secrets is one per line."""
    if typing.get_origin(kind) is tuple:
        return [line.strip() for line in text.splitlines() if line.strip()]
    return text


# Settings only a running gateway needs: commands that only read and write the store may leave
# them unset (an administrator need not hold the secret key to list organisations).
SERVING_ONLY = frozenset({"security.secret_key"})


def _build_section(
    name: str,
    cls: type[Any],
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    base: Path,
    may_be_unset: frozenset[str],
) -> tuple[Any, list[str]]:
    problems: list[str] = []
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    secret_files = {
        f"{f.name}_file" for f in dataclasses.fields(cls) if f.metadata.get("env") is not None
    }
    for key in raw:
        if key not in known and key not in secret_files:
            problems.append(f"{name}.{key}: unknown key")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{name}.{f.name}"
        env_name: str | None = f.metadata.get("env")
        given = f.name in raw
        if env_name is not None:
            file_key = f"{f.name}_file"
            sources = [s for s in (given, file_key in raw, env_name in env) if s]
            if len(sources) > 1:
                problems.append(
                    f"{key}: set in more than one place ({f.name}, {file_key}, env {env_name});"
                    " keep one"
                )
                continue
            if file_key in raw:
                if not isinstance(raw[file_key], str):
                    problems.append(f"{name}.{file_key}: must be a string path")
                    continue
                secret, problem = _read_secret_file(raw[file_key], base)
                if problem:
                    problems.append(f"{name}.{file_key}: {problem}")
                    continue
                raw = {**raw, f.name: _secret_value(hints[f.name], secret)}
                given = True
            elif env_name in env:
                raw = {**raw, f.name: _secret_value(hints[f.name], env[env_name])}
                given = True
        value = raw[f.name] if given else f.default
        if given:
            value, problem = _coerce(hints[f.name], value)
            if problem:
                problems.append(f"{key}: {problem}")
                continue
        check: Check | None = f.metadata.get("check")
        if not given and key in may_be_unset:
            check = None
        problem = check(value) if check else None
        if problem:
            problems.append(f"{key}: {problem}")
            continue
        values[f.name] = value
    if problems:
        return None, problems
    return cls(**values), []


def build_config(
    raw: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
    serving: bool = True,
) -> Config:
    """Turn parsed TOML into a Config, or raise ConfigError listing every bad key.

    With ``serving`` false the SERVING_ONLY settings may be left unset (a value given is
    still checked): for commands that do not run the gateway.
    """
    env = os.environ if env is None else env
    base = Path.cwd() if base is None else base
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for name in raw:
        if name not in SECTIONS:
            problems.append(f"{name}: unknown section")
    for name, cls in SECTIONS.items():
        section_raw = raw.get(name, {})
        if not isinstance(section_raw, dict):
            problems.append(f"{name}: must be a table ([{name}])")
            continue
        may_be_unset = frozenset() if serving else SERVING_ONLY
        built, section_problems = _build_section(name, cls, section_raw, env, base, may_be_unset)
        problems.extend(section_problems)
        if built is not None:
            sections[name] = built
    if problems:
        raise ConfigError(problems)
    return Config(**sections)


def load_config(
    path: str | Path, *, env: Mapping[str, str] | None = None, serving: bool = True
) -> Config:
    """Read and check a TOML config file; relative paths inside it are taken from its folder.

    ``serving`` as for :func:`build_config`.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    config = build_config(raw, env=env, base=path.parent, serving=serving)
    store_path = Path(config.store.path)
    if not store_path.is_absolute():
        store = dataclasses.replace(config.store, path=str(path.parent / store_path))
        config = dataclasses.replace(config, store=store)
    return config


__all__ = [
    "SECTIONS",
    "SERVING_ONLY",
    "XERO_TIERS",
    "AdminConfig",
    "Check",
    "Config",
    "EmailConfig",
    "LoggingConfig",
    "SecurityConfig",
    "ServerConfig",
    "SessionConfig",
    "SmsConfig",
    "StoreConfig",
    "ThrottleConfig",
    "UpstreamConfig",
    "XeroConfig",
    "XeroProxyConfig",
    "build_config",
    "load_config",
    "setting",
]

"""A policy document written as TOML text, for people to read and edit (the console's editor).

The store keeps documents as JSON; this turns one back into the TOML of a policy file, in the
declared fields' order, each key under a comment saying what it is. Reading the text with
``parse_policy_text`` gives the policy the document describes. Keys that are not declared
fields (a document stored by an older version, say) are written too, after the declared
ones, so that nothing stored is hidden from the person editing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.policy.fields import FIELDS, by_table

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# What the canonical document writes for an instant: an ISO date or an offset date-time, which
# TOML reads as the same date or date-time when written unquoted.
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2}))?"
)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"
_INSTANT_PATHS = frozenset(f.path for f in FIELDS if f.kind == "instant")
_DESCRIPTIONS = {f.path: f.description for f in FIELDS}
_TOP_ORDER = [f.key for f in FIELDS if f.table is None]
_TABLE_ORDER = list(by_table())


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if path in _INSTANT_PATHS and _INSTANT.fullmatch(value):
            return value
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item, path) for item in value) + "]"
    if isinstance(value, Mapping):
        pairs = (f"{_key(str(k))} = {_value(v, f'{path}.{k}')}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }" if value else "{}"
    return _string(str(value))  # not JSON: shown as text, for the parser to refuse


def _ordered(keys: list[str], declared: list[str]) -> list[str]:
    return [k for k in declared if k in keys] + sorted(k for k in keys if k not in declared)


def _pairs(table: Mapping[str, Any], prefix: str, declared: list[str]) -> list[str]:
    lines = []
    for key in _ordered([str(k) for k in table], declared):
        path = f"{prefix}{key}"
        if path in _DESCRIPTIONS:
            lines.append(f"# {_DESCRIPTIONS[path].replace('`', '')}")
        lines.append(f"{_key(key)} = {_value(table[key], path)}")
    return lines


def write_toml(document: Mapping[str, Any]) -> str:
    """The TOML text of a policy document (JSON-shaped, as the store and the API hold it)."""
    tops = {k: v for k, v in document.items() if not isinstance(v, Mapping)}
    lines = _pairs(tops, "", _TOP_ORDER)
    tables = [str(k) for k, v in document.items() if isinstance(v, Mapping)]
    for name in _ordered(tables, _TABLE_ORDER):
        table: Mapping[str, Any] = document[name]
        declared = [f.key for f in by_table().get(name, [])]
        lines += ["", f"[{_key(name)}]"]
        lines += _pairs(table, f"{name}.", declared)
        for f in by_table().get(name, []):
            if f.nullable and f.key not in table:  # absent means none: still say what it is
                lines.append(f"# {f.key}: {f.description.replace('`', '')}")
    return "\n".join(lines) + "\n"

"""A structured diff of two JSON documents: one entry per changed leaf, named by dotted path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _same(before: Any, after: Any) -> bool:
    # Compare as JSON, so that 1, 1.0 and true, equal in Python, still count as different.
    return json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _one_sided(path: str, value: Any, side: str, out: list[dict[str, Any]]) -> None:
    """Every leaf of a value present on one side only, as "added" or "removed" changes."""
    if isinstance(value, Mapping) and value:
        for key in sorted(value):
            _one_sided(_join(path, key), value[key], side, out)
        return
    if side == "after":
        out.append({"path": path, "kind": "added", "after": value})
    else:
        out.append({"path": path, "kind": "removed", "before": value})


def _walk(path: str, before: Any, after: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after)):
            where = _join(path, key)
            if key not in before:
                _one_sided(where, after[key], "after", out)
            elif key not in after:
                _one_sided(where, before[key], "before", out)
            else:
                _walk(where, before[key], after[key], out)
    elif not _same(before, after):
        # Lists are leaves: in a policy they are sets of names, best read whole.
        out.append({"path": path, "kind": "changed", "before": before, "after": after})


def diff_documents(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The changes from ``before`` to ``after``, sorted by path.

    Each is ``{"path", "kind", "before", "after"}``: ``kind`` is "changed", "added" (no
    ``before``) or "removed" (no ``after``); paths are dotted, e.g. ``schedule.deadline``,
    like the field names in validation errors and lint warnings.
    """
    out: list[dict[str, Any]] = []
    _walk("", before, after, out)
    return out

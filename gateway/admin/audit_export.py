"""The audit trail as CSV or JSON lines, pure: one event document in, one line out.

CSV cells a spreadsheet would read as a formula (those starting with =, +, -, @, a tab or a
carriage return) are neutralised with a leading apostrophe, so an export opened in a
spreadsheet runs nothing a user or an attacker typed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from gateway.store.audit import EVENT_FIELDS

FORMATS = {
    "csv": "text/csv",
    "jsonl": "application/jsonl",
}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """``cell`` as a spreadsheet will show it and never run it."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    return neutralise(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


def csv_header() -> str:
    """The CSV's first line: the event fields."""
    return _line(list(EVENT_FIELDS))


def csv_line(document: Mapping[str, Any]) -> str:
    """One event (as ``event_document`` writes it) as a CSV record; its detail as JSON."""
    return _line([_cell(document[field]) for field in EVENT_FIELDS])


def jsonl_line(document: Mapping[str, Any]) -> str:
    """One event as a line of JSON."""
    return json.dumps(dict(document), ensure_ascii=False, separators=(",", ":")) + "\n"

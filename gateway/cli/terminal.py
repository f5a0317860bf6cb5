"""What the command line shows and reads: aligned tables and typed-in instants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TextIO

from gateway.errors import UsageError


def table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Plain aligned columns, for reading and for grep."""
    cells = [list(map(str, header))] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def parse_moment(text: str) -> dt.datetime:
    """An ISO date or date-time as typed: aware if it has an offset, else naive (a plain date
    is the start of that day), for the caller to place in the right time zone."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{text!r} is not an ISO date or date-time, e.g. 2027-01-05") from exc


def parse_instant(text: str, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
    """An ISO date or date-time; without an offset it is read in ``zone`` (UTC unless given)."""
    value = parse_moment(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def when(ts: float) -> str:
    """An instant (Unix seconds) as the commands print it: ISO 8601 UTC to the second."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")

"""The dashboard's enrolment chart, pure: a daily series in, inline SVG markup out.

Every piece of text is escaped here, so the markup can be put in a page as it is. The chart
has a title and a description for screen readers (the page shows the same numbers as a table).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from html import escape

from gateway.policy.progress import DayCount

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 36
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * index / (count - 1) if count > 1 else span / 2)


def _y(value: int, top: int) -> float:
    span = HEIGHT - TOP - BOTTOM
    return HEIGHT - BOTTOM - span * value / top


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b}"


def enrolment_chart(series: Sequence[DayCount], *, in_scope: int, name: str) -> str:
    """An SVG line chart of ``series`` (users with 2FA by day) against ``in_scope`` (the
    users the policy covers), labelled with ``name``; no scripts, no external references."""
    key = _ID_UNSAFE.sub("-", name)[:64] or "chart"
    top = max(1, in_scope, *(point.enrolled for point in series))
    title = f"Enrolment for {name}"
    if series:
        first, last = series[0], series[-1]
        desc = (
            f"Users with 2FA set up, by day, from {first.day.isoformat()} ({first.enrolled})"
            f" to {last.day.isoformat()} ({last.enrolled}), of {in_scope} in scope."
        )
    else:
        desc = f"No days to show; {in_scope} users in scope."
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-labelledby="{key}-title {key}-desc" class="chart"'
        f' data-points="{len(series)}">',
        f'<title id="{key}-title">{escape(title)}</title>',
        f'<desc id="{key}-desc">{escape(desc)}</desc>',
        # Axes, and the line of everyone in scope: where enrolment has to get to.
        f'<path d="M{LEFT} {TOP}V{HEIGHT - BOTTOM}H{WIDTH - RIGHT}"'
        ' fill="none" stroke="currentColor" stroke-opacity=".5"/>',
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_y(in_scope, top):.1f}"'
        f' y2="{_y(in_scope, top):.1f}" stroke="#b42318" stroke-dasharray="4 4"/>',
        f'<text x="{LEFT - 6}" y="{_y(top, top) + 4:.1f}" text-anchor="end"'
        f' font-size="12" fill="currentColor">{top}</text>',
        f'<text x="{LEFT - 6}" y="{HEIGHT - BOTTOM + 4}" text-anchor="end"'
        ' font-size="12" fill="currentColor">0</text>',
    ]
    if series:
        points = " ".join(
            f"{_x(i, len(series)):.1f},{_y(p.enrolled, top):.1f}" for i, p in enumerate(series)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="#0b6bcb" stroke-width="2.5"/>'
        )
        for index, anchor in ((0, "start"), (len(series) - 1, "end")):
            parts.append(
                f'<text x="{_x(index, len(series)):.1f}" y="{HEIGHT - 12}"'
                f' text-anchor="{anchor}" font-size="12" fill="currentColor">'
                f"{escape(_day(series[index].day))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)

"""The dashboard's pure parts: enrolment by day, days left, the SVG chart, and the audit
export's CSV and JSON lines (formula cells neutralised)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from xml.etree import ElementTree

import pytest

from gateway.admin.audit_export import csv_header, csv_line, jsonl_line, neutralise
from gateway.admin.chart import enrolment_chart
from gateway.policy.progress import DayCount, days_left, enrolment_by_day

SYDNEY = "Australia/Sydney"
SVG = "{http://www.w3.org/2000/svg}"


def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def test_enrolment_is_counted_by_the_day_it_was_confirmed_in_the_policys_zone() -> None:
    confirmed = [
        _at("2026-11-28T10:00:00+00:00"),  # before the window: counted from the first day
        _at("2026-12-01T12:30:00+00:00"),  # 23:30 on 1 December in Sydney
        _at("2026-12-01T13:30:00+00:00"),  # 00:30 on 2 December in Sydney
        _at("2026-12-03T01:00:00+00:00"),
    ]
    series = enrolment_by_day(confirmed, last_day=dt.date(2026, 12, 3), days=4, zone=SYDNEY)
    assert series == [
        DayCount(day=dt.date(2026, 11, 30), enrolled=1),
        DayCount(day=dt.date(2026, 12, 1), enrolled=2),
        DayCount(day=dt.date(2026, 12, 2), enrolled=3),
        DayCount(day=dt.date(2026, 12, 3), enrolled=4),
    ]
    utc = enrolment_by_day(confirmed, last_day=dt.date(2026, 12, 3), days=4, zone="UTC")
    assert [p.enrolled for p in utc] == [1, 3, 3, 4]


def test_a_confirmation_after_the_last_day_is_not_counted_and_days_are_bounded() -> None:
    later = [_at("2026-12-10T00:00:00+00:00")]
    assert enrolment_by_day(later, last_day=dt.date(2026, 12, 3), days=1, zone="UTC") == [
        DayCount(day=dt.date(2026, 12, 3), enrolled=0)
    ]
    for days in (0, 367):
        with pytest.raises(ValueError, match="days"):
            enrolment_by_day([], last_day=dt.date(2026, 12, 3), days=days, zone="UTC")


def test_days_left_count_calendar_days_in_the_zone_and_stop_at_zero() -> None:
    deadline = dt.datetime(2027, 1, 5, 0, 0, tzinfo=dt.UTC)
    assert days_left(deadline, dt.datetime(2027, 1, 1, 23, 0, tzinfo=dt.UTC), "UTC") == 4
    # 10:00 on 2 January in Sydney; the deadline is 11:00 on 5 January there.
    assert days_left(deadline, dt.datetime(2027, 1, 1, 23, 0, tzinfo=dt.UTC), SYDNEY) == 3
    assert days_left(deadline, deadline, "UTC") == 0
    assert days_left(deadline, deadline + dt.timedelta(days=3), "UTC") == 0


def _parse(markup: str) -> ElementTree.Element:
    """The chart as XML: markup this project made, so no untrusted input."""
    return ElementTree.fromstring(markup)  # noqa: S314 - our own markup, parsed in a test


def _series(*counts: int) -> list[DayCount]:
    first = dt.date(2026, 12, 1)
    return [DayCount(day=first + dt.timedelta(days=i), enrolled=n) for i, n in enumerate(counts)]


def test_the_chart_is_accessible_svg_with_one_point_per_day() -> None:
    markup = enrolment_chart(_series(0, 1, 1, 3), in_scope=5, name="au-ato-2fa")
    svg = _parse(markup)  # well-formed XML
    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert title.text == "Enrolment for au-ato-2fa"
    assert desc.text is not None
    assert "2026-12-01 (0)" in desc.text
    assert "2026-12-04 (3)" in desc.text
    assert "of 5" in desc.text
    line = svg.find(f"{SVG}polyline")
    assert line is not None
    points = [tuple(map(float, p.split(","))) for p in (line.get("points") or "").split()]
    assert len(points) == 4
    assert points == sorted(points, key=lambda p: p[0])  # left to right
    ys = [y for _, y in points]
    assert ys[0] > ys[1] == ys[2] > ys[3]  # higher counts are drawn higher up
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "1 Dec" in texts
    assert "4 Dec" in texts
    assert "5" in texts


def test_the_chart_escapes_every_text_and_refers_to_nothing_outside() -> None:
    name = '<script>alert("x")</script> & "quotes"'
    markup = enrolment_chart(_series(2), in_scope=2, name=name)
    svg = _parse(markup)
    assert "<script" not in markup
    title = svg.find(f"{SVG}title")
    assert title is not None
    assert title.text == f"Enrolment for {name}"
    assert all(c.isalnum() or c in "-_ " for c in svg.get("aria-labelledby") or "")
    assert "href" not in markup
    assert "url(" not in markup
    empty = _parse(enrolment_chart([], in_scope=0, name="x"))
    assert empty.find(f"{SVG}polyline") is None


DOCUMENT = {
    "id": 7,
    "at": "2026-12-24T09:00:00+00:00",
    "kind": "mfa.reset",
    "actor": "@admin",
    "subject": "usr_1",
    "org_id": None,
    "client_addr": "-1",
    "detail": {"reason": '=HYPERLINK("http://evil.example")', "n": 3},
}


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_cells_a_spreadsheet_would_run_are_neutralised(start: str) -> None:
    assert neutralise(f"{start}1+1") == f"'{start}1+1"
    assert neutralise(f"a{start}") == f"a{start}"
    assert neutralise("") == ""


def test_a_csv_record_reads_back_with_every_formula_defused() -> None:
    text = csv_header() + csv_line(DOCUMENT)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "at", "kind", "actor", "subject", "org_id", "client_addr", "detail"]
    record = dict(zip(rows[0], rows[1], strict=True))
    assert record["id"] == "7"
    assert record["actor"] == "'@admin"
    assert record["org_id"] == ""
    assert record["client_addr"] == "'-1"
    assert json.loads(record["detail"]) == DOCUMENT["detail"]  # a JSON object: starts with {
    for cell in rows[1]:
        assert not cell.startswith(("=", "+", "-", "@"))


def test_a_jsonl_line_is_one_line_of_the_whole_event() -> None:
    line = jsonl_line({**DOCUMENT, "detail": {"note": "two\nlines"}})
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert json.loads(line) == {**DOCUMENT, "detail": {"note": "two\nlines"}}

"""The console editor's judgement of a policy's TOML text: each problem and lint warning on the
line it names, and the text line by line with them, for the page to show. Pure: ``now`` is
passed in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gateway.admin.policies import id_problem, lint_warnings
from gateway.policy import Policy, PolicyError, parse_policy_text
from gateway.policy.document import key_lines, line_of

# The name parse_policy_text puts before each problem ("policy:12: ..."), taken off again here.
_NAME = "policy"
_LOCATED = re.compile(rf"{_NAME}(?::([0-9]+))?: (.*)", re.DOTALL)

Severity = Literal["error", "warning"]


@dataclass(frozen=True, kw_only=True)
class Note:
    """One problem (``error``: the text cannot be saved) or lint warning (advice)."""

    severity: Severity
    line: int | None  # None: the text names no line for it
    message: str


@dataclass(frozen=True, kw_only=True)
class Checked:
    """The text as a policy (None if it has an error), and every note about it, by line."""

    policy: Policy | None
    notes: tuple[Note, ...]

    @property
    def errors(self) -> tuple[Note, ...]:
        return tuple(n for n in self.notes if n.severity == "error")


@dataclass(frozen=True, kw_only=True)
class Line:
    """One line of the text, numbered from 1, with the notes that name it."""

    number: int
    text: str
    notes: tuple[Note, ...]


def _sorted(notes: list[Note]) -> tuple[Note, ...]:
    # Notes naming no line first (they concern the whole text), then by line.
    return tuple(sorted(notes, key=lambda n: (n.line or 0, n.severity)))


def _located(problem: str) -> Note:
    match = _LOCATED.fullmatch(problem)
    if match is None:  # pragma: no cover - parse_policy_text always names the text
        return Note(severity="error", line=None, message=problem)
    number = int(match[1]) if match[1] else None
    return Note(severity="error", line=number, message=match[2])


def check_text(text: str, policy_id: str, now: float) -> Checked:
    """Judge ``text`` as the new TOML of the policy ``policy_id`` at ``now``."""
    try:
        policy = parse_policy_text(text, _NAME)
    except PolicyError as exc:
        return Checked(policy=None, notes=_sorted([_located(p) for p in exc.problems]))
    lines = key_lines(text)
    mismatch = id_problem(policy_id, policy.id)
    if mismatch is not None:
        note = Note(severity="error", line=line_of("id", lines), message=mismatch)
        return Checked(policy=None, notes=(note,))
    warnings = [
        Note(severity="warning", line=line_of(w.field, lines), message=f"{w.field}: {w.message}")
        for w in lint_warnings(policy, now)
    ]
    return Checked(policy=policy, notes=_sorted(warnings))


def numbered(text: str, notes: tuple[Note, ...]) -> list[Line]:
    """The text line by line with the notes of each; a note past the end (TOML's end of
    input) goes with the last line."""
    rows = text.splitlines() or [""]
    last = len(rows)
    by_line: dict[int, list[Note]] = {}
    for note in notes:
        if note.line is not None:
            by_line.setdefault(min(note.line, last), []).append(note)
    return [
        Line(number=n, text=row, notes=tuple(by_line.get(n, ())))
        for n, row in enumerate(rows, start=1)
    ]

"""The base of every audit event, and how an event becomes the row the store writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

Document = Mapping[str, Any]  # a JSON object, as an event's before/after


@dataclass(frozen=True, kw_only=True)
class Event:
    """A thing that happened, for the audit trail; subclasses set ``kind`` and their fields."""

    kind: ClassVar[str]
    subject_field: ClassVar[str | None] = None  # which field is stored as the subject


@dataclass(frozen=True, kw_only=True)
class AuditRow:
    """An event as the store writes it: the kind, the two columns and the JSON detail."""

    kind: str
    subject: str | None
    org_id: str | None
    detail: dict[str, Any]


def event_row(event: Event) -> AuditRow:
    """The one way an event becomes what the store writes (tuples become JSON arrays)."""
    detail: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        if f.name not in (event.subject_field, "org_id"):
            value = getattr(event, f.name)
            detail[f.name] = list(value) if isinstance(value, tuple) else value
    subject = getattr(event, event.subject_field) if event.subject_field else None
    return AuditRow(
        kind=event.kind, subject=subject, org_id=getattr(event, "org_id", None), detail=detail
    )

"""The admin API's policy bodies; the policy document's schema is derived from its fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from gateway.policy import FIELDS, PolicyField
from gateway.policy.fields import DURATION, SLUG, by_table
from gateway.schema.instants import Instant
from gateway.store import POLICY_CHANGES

_KIND_NOTES = {
    "instant": "A plain date, read in schedule.timezone (announce: its start; deadline: its"
    " end), or a date-time with an offset.",
    "duration": "A whole number and a unit: s, m, h or d.",
}
_KIND_EXAMPLES = {
    "instant": ["2026-12-31", "2026-12-31T17:00:00+11:00"],
    "duration": ["10m", "23h"],
    "zone": ["Australia/Sydney"],
    "days": [[14, 7, 1]],
}


def _value_schema(f: PolicyField) -> dict[str, Any]:
    """The JSON Schema of one field's value, as the document parser reads it."""
    schema: dict[str, Any]
    if f.kind == "flag":
        schema = {"type": "boolean"}
    elif f.kind == "count":
        schema = {"type": ["integer", "null"] if f.nullable else "integer"}
        if f.minimum is not None:
            schema["minimum"] = f.minimum
    elif f.kind == "names":
        schema = {
            "type": "array",
            "items": {"type": "string", "enum": sorted(f.choices)},
            "uniqueItems": True,
        }
        if f.at_least_one:
            schema["minItems"] = 1
    elif f.kind == "days":
        schema = {
            "type": "array",
            "items": {"type": "integer", "minimum": f.minimum, "maximum": f.maximum},
            "uniqueItems": True,
        }
    elif f.kind == "choice":
        schema = {"type": "string", "enum": sorted(f.choices)}
    elif f.kind == "slug":
        schema = {"type": "string", "pattern": f"^{SLUG}$"}
    elif f.kind == "duration":
        schema = {"type": "string", "pattern": f"^{DURATION}$"}
    else:  # text, zone, instant
        schema = {"type": "string"}
    note = _KIND_NOTES.get(f.kind)
    schema["description"] = f"{f.description[:1].upper()}{f.description[1:]}." + (
        f" {note}" if note else ""
    )
    if f.kind in _KIND_EXAMPLES:
        schema["examples"] = _KIND_EXAMPLES[f.kind]
    return schema


def _closed(properties: dict[str, Any], required: list[str], **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **more}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def policy_document_schema() -> dict[str, Any]:
    """The JSON Schema of a policy document, from the declared fields; the parser stays the
    authority (it also checks what a schema cannot, such as the announce date's order)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    tables = by_table()
    for f in FIELDS:
        if f.table is None:
            properties[f.key] = _value_schema(f)
            if f.required:
                required.append(f.key)
        elif f.table not in properties:
            table = tables[f.table]
            properties[f.table] = _closed(
                {t.key: _value_schema(t) for t in table},
                [t.key for t in table if t.required],
            )
            if any(t.required for t in table):
                required.append(f.table)
    return _closed(
        properties, required, description="A 2FA policy document, as in the TOML policy files."
    )


def _document_schema(schema: dict[str, Any], _model: type[Any]) -> None:
    schema.clear()
    schema.update(policy_document_schema())


class PolicyDocument(RootModel[dict[str, Any]]):
    """A policy document: any JSON object here; the policy parser judges its fields."""

    model_config = ConfigDict(json_schema_extra=_document_schema)


class LintWarning(BaseModel):
    field: str
    message: str


class PolicyRecord(BaseModel):
    """A stored policy: its document with the stored enabled flag, and its store version."""

    id: str
    version: int = Field(description="The store version (the ETag).")
    enabled: bool
    updated_at: Instant
    updated_by: str
    document: PolicyDocument


class PolicyWritten(PolicyRecord):
    """A policy as a write left it."""

    changed: bool | None = Field(
        default=None, description="False when the request changed nothing."
    )
    warnings: list[LintWarning] | None = Field(
        default=None, description="Lint warnings: advice, never a reason to refuse."
    )


class PolicySummary(BaseModel):
    id: str
    version: int
    enabled: bool
    valid: bool = Field(
        description="False if the stored document no longer parses: a disabled policy is then"
        " left out of every decision, an enabled one keeps its last good version in force."
    )
    description: str
    updated_at: Instant
    updated_by: str


class PolicyList(BaseModel):
    policies: list[PolicySummary]


class HistoryEntry(BaseModel):
    version: int
    change: str = Field(json_schema_extra={"enum": list(POLICY_CHANGES)})
    enabled: bool
    at: Instant
    by: str


class PolicyHistory(BaseModel):
    id: str
    versions: list[HistoryEntry]


class PolicyDeleted(HistoryEntry):
    """The history entry of the deletion."""

    id: str


class PolicyVersion(PolicyDeleted):
    """One version of a policy, with its document."""

    document: PolicyDocument


class Change(BaseModel):
    path: str = Field(examples=["schedule.deadline", "enabled"])
    kind: Literal["changed", "added", "removed"]
    before: Any = Field(default=None, description="Absent when added.")
    after: Any = Field(default=None, description="Absent when removed.")


class PolicyDiff(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    id: str
    from_: HistoryEntry = Field(alias="from")
    to: HistoryEntry
    changes: list[Change]


class PolicyLint(BaseModel):
    """What replacing a policy with a valid document would do; nothing is saved."""

    id: str
    version: int = Field(
        description="The stored version compared with: send it as If-Match to save the document."
    )
    warnings: list[LintWarning] = Field(description="Lint warnings: advice, never a refusal.")
    changes: list[Change] = Field(description="What a replace would change, by dotted path.")

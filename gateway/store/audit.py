"""The audit trail: append-only events with a JSON detail, listed or paged out for export."""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.audit import Event, event_row
from gateway.errors import StoreError
from gateway.store.database import Database, Row, Transaction
from gateway.store.records import AuditEntry, AuditEvent

# An audit event's fields, in the order the admin API lists them and the CLI exports them.
EVENT_FIELDS = ("id", "at", "kind", "actor", "subject", "org_id", "client_addr", "detail")


def event_document(event: AuditEvent, *, when: Callable[[float], str]) -> dict[str, Any]:
    """An audit event as JSON, its time written by ``when``, with the EVENT_FIELDS."""
    return {
        "id": event.id,
        "at": when(event.at),
        "kind": event.kind,
        "actor": event.actor,
        "subject": event.subject,
        "org_id": event.org_id,
        "client_addr": event.client_addr,
        "detail": event.detail,
    }


_SELECT = "SELECT id, at, kind, actor, subject, org_id, client_addr, detail FROM audit_events"
_CLAUSES = {
    "since": "at >= :since",
    "until": "at < :until",
    "kind": "kind = :kind",
    "actor": "actor = :actor",
    "subject": "subject = :subject",
    "org_id": "org_id = :org_id",
    "after_id": "id > :after_id",
    "before_id": "id < :before_id",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditFilter:
    """Which events to read: each field that is not None narrows the selection (times are
    Unix seconds, since <= at < until; the others are compared exactly)."""

    since: float | None = None
    until: float | None = None
    kind: str | None = None
    actor: str | None = None
    subject: str | None = None
    org_id: str | None = None


NO_FILTER = AuditFilter()


def _event(row: Row) -> AuditEvent:
    detail = json.loads(row["detail"])
    if not isinstance(detail, dict):
        raise StoreError(f"audit event {row['id']} has a detail that is not a JSON object")
    return AuditEvent(
        id=row["id"],
        at=row["at"],
        kind=row["kind"],
        actor=row["actor"],
        subject=row["subject"],
        org_id=row["org_id"],
        client_addr=row["client_addr"],
        detail=detail,
    )


def _where(
    filters: AuditFilter, *, after_id: int | None = None, before_id: int | None = None
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause built only from the fixed fragments above (never from input), and params."""
    given = {
        "since": filters.since,
        "until": filters.until,
        "kind": filters.kind,
        "actor": filters.actor,
        "subject": filters.subject,
        "org_id": filters.org_id,
        "after_id": after_id,
        "before_id": before_id,
    }
    params = {name: value for name, value in given.items() if value is not None}
    clauses = [_CLAUSES[name] for name in params]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _detail_json(kind: str, detail: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"audit detail for {kind!r} is not JSON-serialisable: {exc}") from exc


async def _insert(
    tx: Transaction,
    event: Event,
    *,
    at: float,
    actor: str | None,
    client_addr: str | None,
    extra: Mapping[str, Any] | None = None,
) -> int:
    """Write one event: every audit event goes through here, in the caller's transaction."""
    row = event_row(event)
    inserted = await tx.fetch_one(
        "INSERT INTO audit_events (at, kind, actor, subject, org_id, client_addr, detail)"
        " VALUES (:at, :kind, :actor, :subject, :org_id, :client_addr, :detail) RETURNING id",
        {
            "at": at,
            "kind": row.kind,
            "actor": actor,
            "subject": row.subject,
            "org_id": row.org_id,
            "client_addr": client_addr,
            "detail": _detail_json(row.kind, {**(extra or {}), **row.detail}),
        },
    )
    if inserted is None:  # pragma: no cover - an INSERT ... RETURNING always returns its row
        raise StoreError(f"the audit event {row.kind!r} was not given an id")
    return int(inserted["id"])


async def record_change(tx: Transaction, entry: AuditEntry, event: Event, *, at: float) -> int:
    """Append the event of a change inside the caller's (the change's) transaction.

    The event's detail (what the change saw: before, after...) is laid over ``entry.detail``.
    If the event cannot be written, the error rolls the whole transaction back: no change goes
    unaudited.
    """
    return await _insert(
        tx, event, at=at, actor=entry.actor, client_addr=entry.client_addr, extra=entry.detail
    )


class AuditRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        event: Event,
        *,
        at: float,
        actor: str | None = None,
        client_addr: str | None = None,
    ) -> int:
        """Append one event and return its id; its fields must be JSON-serialisable.

        This is a transaction of its own: an event about a change another repository makes is
        written by that repository, in the change's transaction (see :func:`record_change`).
        """
        async with self._db.transaction() as tx:
            return await _insert(tx, event, at=at, actor=actor, client_addr=client_addr)

    async def list(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
        limit: int = 1000,
        filters: AuditFilter | None = None,
    ) -> builtins.list[AuditEvent]:
        """Events with since <= at < until (either bound optional), oldest id first;
        ``filters``, when given, replaces the three bounds."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        chosen = filters or AuditFilter(since=since, until=until, kind=kind)
        where, params = _where(chosen)
        rows = await self._db.fetch_all(
            f"{_SELECT}{where} ORDER BY id LIMIT :limit", {**params, "limit": limit}
        )
        return [_event(row) for row in rows]

    async def newest(
        self, filters: AuditFilter, *, before_id: int | None = None, limit: int = 50
    ) -> builtins.list[AuditEvent]:
        """Up to ``limit`` matching events with an id below ``before_id`` (any id if None),
        newest first: a page of the trail, the next page starting below its last id."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        where, params = _where(filters, before_id=before_id)
        rows = await self._db.fetch_all(
            f"{_SELECT}{where} ORDER BY id DESC LIMIT :limit", {**params, "limit": limit}
        )
        return [_event(row) for row in rows]

    async def count(self, filters: AuditFilter) -> int:
        """How many events match ``filters`` now."""
        where, params = _where(filters, after_id=0)
        row = await self._db.fetch_one(
            f"SELECT count(*) AS n FROM audit_events{where}",  # noqa: S608 (built clauses)
            params,
        )
        return int(row["n"]) if row is not None else 0

    async def iterate(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        page_size: int = 500,
        filters: AuditFilter | None = None,
    ) -> AsyncIterator[AuditEvent]:
        """Every matching event, oldest id first, read a page at a time (for export);
        ``filters``, when given, replaces the two bounds.

        No lock is held between pages, so the gateway keeps working during a long export;
        events appended meanwhile are included if they match.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        chosen = filters or AuditFilter(since=since, until=until)
        after_id = 0
        while True:
            where, params = _where(chosen, after_id=after_id)
            rows = await self._db.fetch_all(
                f"{_SELECT}{where} ORDER BY id LIMIT :limit", {**params, "limit": page_size}
            )
            for row in rows:
                yield _event(row)
            if len(rows) < page_size:
                return
            after_id = rows[-1]["id"]

    async def latest_by_subject(self, *, org_id: str, kind: str) -> dict[str, float]:
        """When each subject of ``org_id`` last had an event of ``kind`` (e.g. each member's
        last sign-in): subject to time, for the subjects that have one."""
        rows = await self._db.fetch_all(
            "SELECT subject, max(at) AS at FROM audit_events"
            " WHERE org_id = :org_id AND kind = :kind AND subject IS NOT NULL GROUP BY subject",
            {"org_id": org_id, "kind": kind},
        )
        return {row["subject"]: float(row["at"]) for row in rows}

    async def latest_for(self, *, subject: str, kind: str) -> float | None:
        """When ``subject`` last had an event of ``kind`` (e.g. a user's last sign-in)."""
        row = await self._db.fetch_one(
            "SELECT max(at) AS at FROM audit_events WHERE subject = :subject AND kind = :kind",
            {"subject": subject, "kind": kind},
        )
        return None if row is None or row["at"] is None else float(row["at"])

"""The audit trail for admins: the filters the API and the console share, a page of events,
and the export as CSV or JSON lines (streamed, bounded, with the same filters)."""

from __future__ import annotations

import datetime as dt
import logging

from aiohttp import web

from gateway.admin.audit_export import FORMATS, csv_header, csv_line, jsonl_line
from gateway.admin.http import (
    JSON_HEADERS,
    Call,
    bad_parameter,
    instant,
    int_param,
    json_response,
    optional_instant_param,
)
from gateway.errors import StoreError
from gateway.schema.reports import AuditEventBody, AuditPage
from gateway.store import Store, event_document
from gateway.store.audit import AuditFilter
from gateway.store.records import AuditEvent

log = logging.getLogger("gateway.admin")

MAX_KIND = 64
MAX_NAME = 320  # an actor or subject: an id, or an email address
DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 1000
MAX_EXPORT = 100_000  # events in one export; narrow the filters for more
FILTERS = ("kind", "actor", "subject", "org", "since", "until")


def _text(request: web.Request, name: str, limit: int) -> str | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if len(value) > limit or not value.isprintable():
        raise bad_parameter(name, f"must be at most {limit} printable characters")
    return value


async def audit_filter(request: web.Request, store: Store) -> AuditFilter:
    """The filters a request's query names (kind, actor, subject, org, since, until); a 400
    problem for a bad one. A subject given as an email address means that user's id."""
    since = optional_instant_param(request, "since")
    until = optional_instant_param(request, "until")
    if since is not None and until is not None and until < since:
        raise bad_parameter("until", "must not be before since")
    subject = _text(request, "subject", MAX_NAME)
    if subject is not None and "@" in subject:
        user = await store.users.find_by_email(subject)
        subject = user.id if user is not None else subject
    return AuditFilter(
        since=since.timestamp() if since is not None else None,
        until=until.timestamp() if until is not None else None,
        kind=_text(request, "kind", MAX_KIND),
        actor=_text(request, "actor", MAX_NAME),
        subject=subject,
        org_id=_text(request, "org", MAX_NAME),
    )


def event_body(event: AuditEvent) -> AuditEventBody:
    """An event as the API lists it: the shape the CLI exports too, checked against the model."""
    return AuditEventBody.model_validate(event_document(event, when=instant))


async def audit_events(call: Call) -> web.StreamResponse:
    request = call.request
    filters = await audit_filter(request, call.services.store)
    limit = int_param(
        request, "limit", default=DEFAULT_AUDIT_LIMIT, minimum=1, maximum=MAX_AUDIT_LIMIT
    )
    # One more than asked, to tell whether there are more.
    events = await call.services.store.audit.list(filters=filters, limit=limit + 1)
    return json_response(
        AuditPage(events=[event_body(event) for event in events[:limit]], more=len(events) > limit)
    )


def export_format(request: web.Request) -> str:
    """The export's format (csv unless jsonl is asked for); a 400 problem otherwise."""
    chosen = request.query.get("format", "csv").strip().lower() or "csv"
    if chosen not in FORMATS:
        raise bad_parameter("format", f"must be one of {', '.join(FORMATS)}")
    return chosen


async def export_audit(call: Call) -> web.StreamResponse:
    """Matching events, oldest first, streamed as CSV or JSON lines; at most ``limit``."""
    request = call.request
    chosen = export_format(request)
    filters = await audit_filter(request, call.services.store)
    limit = int_param(request, "limit", default=MAX_EXPORT, minimum=1, maximum=MAX_EXPORT)
    day = dt.datetime.fromtimestamp(call.now, dt.UTC).date().isoformat()
    # Said before the body starts, so a client can tell a file cut at the limit from a whole
    # one (events recorded while it streams may add to what matched).
    matching = await call.services.store.audit.count(filters)
    response = web.StreamResponse(
        headers={
            **JSON_HEADERS,
            "Content-Type": f"{FORMATS[chosen]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="audit-{day}.{chosen}"',
            "X-Total-Count": str(matching),
            "X-Export-Limit": str(limit),
        }
    )
    await response.prepare(request)
    if chosen == "csv":
        await response.write(csv_header().encode())
    line = csv_line if chosen == "csv" else jsonl_line
    written = 0
    try:
        async for event in call.services.store.audit.iterate(filters=filters):
            if written >= limit:
                break
            await response.write(line(event_document(event, when=instant)).encode())
            written += 1
    except StoreError:
        # The status is sent; all that can be done is to end the body short, which a client
        # sees as an incomplete transfer rather than a complete file.
        log.exception("audit export failed part way")
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response

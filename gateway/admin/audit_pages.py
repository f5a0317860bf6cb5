"""The console's audit trail: events newest first, filtered, a page at a time, with links to
export the same selection as CSV or JSON lines (the admin API's export, which a signed-in
admin may read)."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from gateway.admin.audit_trail import FILTERS, audit_filter, event_body
from gateway.admin.console_guard import admin_page, render_console
from gateway.admin.http import ADMIN_PREFIX, int_param
from gateway.services import SERVICES
from gateway.store import Admin, AdminSession
from gateway.web.context import add_get

AUDIT_PATH = "/_gateway/admin/audit"
PAGE_SIZE = 50
MAX_ID = 2**62


async def audit_page(request: web.Request, session: AdminSession, admin: Admin) -> web.Response:
    store = request.app[SERVICES].store
    filters = await audit_filter(request, store)
    before = int_param(request, "before", default=MAX_ID, minimum=1, maximum=MAX_ID)
    events = await store.audit.newest(filters, before_id=before, limit=PAGE_SIZE + 1)
    shown = [event_body(event) for event in events[:PAGE_SIZE]]
    chosen = {name: request.query[name].strip() for name in FILTERS if request.query.get(name)}
    more = (
        f"{AUDIT_PATH}?{urlencode({**chosen, 'before': str(shown[-1].id)})}"
        if len(events) > PAGE_SIZE
        else None
    )
    exports = {
        fmt: f"{ADMIN_PREFIX}/audit/export?{urlencode({**chosen, 'format': fmt})}"
        for fmt in ("csv", "jsonl")
    }
    return render_console(
        request,
        session,
        admin,
        "admin_audit.html",
        {"chosen": chosen, "events": shown, "more": more, "exports": exports},
    )


def add_routes(app: web.Application) -> None:
    """The console's audit trail page; register before the /_gateway/ catch-all."""
    add_get(app, AUDIT_PATH, admin_page(audit_page))

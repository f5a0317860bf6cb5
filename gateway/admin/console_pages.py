"""The console's page machinery: pages and forms for a signed-in gateway admin only, each
page rendered with the console's navigation and the session's CSRF token.

A page asked for without an open admin session (none, ended, or its admin disabled since)
sends the browser to the sign-in form; a form posted without one, from another site, or
without its CSRF token is refused before anything is read or changed. A problem raised by
the admin API's shared functions is answered as the API answers it (a page for a browser).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.admin.console import (
    CONSOLE_PATH,
    FORM_PURPOSE,
    cross_site,
    cross_site_refusal,
    signed_in_admin,
)
from gateway.admin.http import ApiProblem
from gateway.http.csrf import csrf_token, csrf_valid
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.services import SERVICES
from gateway.store import Admin, AdminSession
from gateway.web.context import read_form
from gateway.web.pages import expired_form, form_field, render_page

# The console's sections, in the order the navigation lists them: (path, label).
NAV = (
    (CONSOLE_PATH, "Dashboard"),
    ("/_gateway/admin/orgs", "Organisations"),
    ("/_gateway/admin/users", "Users"),
    ("/_gateway/admin/audit", "Audit"),
)

PageHandler = Callable[[web.Request, AdminSession, Admin], Awaitable[web.StreamResponse]]
FormHandler = Callable[
    [web.Request, AdminSession, Admin, Mapping[str, object]], Awaitable[web.StreamResponse]
]


def console_actor(admin: Admin) -> str:
    """How the audit trail names a change an admin made in the console (as a token's)."""
    return f"{admin.id} ({admin.email})"


def client_addr(request: web.Request) -> str | None:
    value = request.get(CLIENT_ADDR)
    return value if isinstance(value, str) else None


def _within(here: str, section: str) -> bool:
    return here == section or (section != CONSOLE_PATH and here.startswith(section + "/"))


def admin_page(handler: PageHandler) -> Handler:
    """``handler`` for a signed-in admin only; anyone else is sent to the sign-in form."""

    async def page(request: web.Request) -> web.StreamResponse:
        found = await signed_in_admin(request)
        if found is None:
            request[OUTCOME] = "rejected"
            raise web.HTTPSeeOther(CONSOLE_PATH, headers={"Cache-Control": "no-store"})
        try:
            return await handler(request, *found)
        except ApiProblem as problem:
            return problem.response(request)

    return page


def admin_form(handler: FormHandler) -> Handler:
    """``handler`` for a form a signed-in admin posted from the console with its CSRF token."""

    async def post(request: web.Request) -> web.StreamResponse:
        if cross_site(request):
            return cross_site_refusal(request)
        found = await signed_in_admin(request)
        if found is None:
            request[OUTCOME] = "rejected"
            return ApiProblem(
                403,
                "admin-session-required",
                "Sign in as an admin",
                "This needs an open admin session: sign in to the console again.",
            ).response(request)
        session, admin = found
        form = await read_form(request)
        presented = form_field(form, "csrf", 128)
        if not csrf_valid(
            request.app[SERVICES].keys.csrf, session.csrf_secret, presented, FORM_PURPOSE
        ):
            return expired_form(request)
        try:
            return await handler(request, session, admin, form)
        except ApiProblem as problem:
            return problem.response(request)

    return post


def render_console(
    request: web.Request,
    session: AdminSession,
    admin: Admin,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    """A console page: ``context`` with the admin, the navigation and the forms' CSRF token."""
    services = request.app[SERVICES]
    return render_page(
        request,
        template,
        {
            "name": admin.name,
            "email": admin.email,
            "admin_nav": [
                {"path": path, "label": label, "current": _within(request.path, path)}
                for path, label in NAV
            ],
            "csrf": csrf_token(services.keys.csrf, session.csrf_secret, FORM_PURPOSE),
            **context,
        },
        status=status,
    )

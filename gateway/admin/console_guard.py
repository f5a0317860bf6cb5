"""What every console page past the door shares: an open admin session, and for a form, a
post from the gateway's own pages carrying the session's CSRF token; and how a page is
rendered, with the console's navigation and the token for its forms.

A page is reached through :func:`console_page`, which hands its handler a :class:`ConsolePage`:
the admin, the token for the page's forms, the posted form, and the admin API's view of the
request (:class:`~gateway.admin.http.Call`), so a page changes things through the very
functions the admin API calls, audited under the admin's name. The session is read from the
store on every request, so a disabled admin is refused at once, mid-edit included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
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
from gateway.admin.http import ApiProblem, Call, session_token
from gateway.http.csrf import csrf_token, csrf_valid
from gateway.http.problems import problem_response
from gateway.http.requests import CLIENT_ADDR, OUTCOME
from gateway.services import SERVICES, Services
from gateway.store import Admin, AdminSession
from gateway.web.context import read_form
from gateway.web.pages import expired_form, form_field, render_page

# The console's sections, in the order the navigation lists them: (path, label).
NAV = (
    (CONSOLE_PATH, "Dashboard"),
    ("/_gateway/admin/policies", "Policies"),
    ("/_gateway/admin/orgs", "Organisations"),
    ("/_gateway/admin/users", "Users"),
    ("/_gateway/admin/audit", "Audit"),
)


def console_actor(admin: Admin) -> str:
    """How the audit trail names a change an admin made in the console (as a token's)."""
    return f"{admin.id} ({admin.email})"


def client_addr(request: web.Request) -> str | None:
    value = request.get(CLIENT_ADDR)
    return value if isinstance(value, str) else None


def _within(here: str, section: str) -> bool:
    return here == section or (section != CONSOLE_PATH and here.startswith(section + "/"))


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


@dataclass(frozen=True, kw_only=True)
class ConsolePage:
    """One console request by a signed-in admin."""

    call: Call  # as the admin API sees it: the parts, one now, the actor, audit, refresh
    session: AdminSession
    admin: Admin
    csrf: str  # the token each form on the page carries
    form: Mapping[str, object] = field(default_factory=dict)  # the posted form; empty on GET

    @property
    def request(self) -> web.Request:
        return self.call.request

    @property
    def services(self) -> Services:
        return self.call.services

    def path(self, name: str) -> str:
        return self.call.path(name)

    def render(
        self, template: str, context: Mapping[str, Any], *, status: int = 200
    ) -> web.Response:
        """A console page (see ``render_console``)."""
        return render_console(
            self.request, self.session, self.admin, template, context, status=status
        )


ConsoleHandler = Callable[[ConsolePage], Awaitable[web.StreamResponse]]
PageHandler = Callable[[web.Request, AdminSession, Admin], Awaitable[web.StreamResponse]]
FormHandler = Callable[
    [web.Request, AdminSession, Admin, Mapping[str, object]], Awaitable[web.StreamResponse]
]


def _signed_out(request: web.Request) -> web.StreamResponse:
    """No open admin session: a page goes to the sign-in form; a form is refused, unread."""
    request[OUTCOME] = "rejected"
    if request.method != "POST":
        raise web.HTTPSeeOther(CONSOLE_PATH, headers={"Cache-Control": "no-store"})
    return problem_response(
        request,
        status=401,
        slug="admin-signed-out",
        title="Sign in again",
        detail="Your admin session has ended (signed out, timed out, or the account was"
        f" disabled), so nothing was changed. Sign in at {CONSOLE_PATH} and try again.",
    )


def console_page(handler: ConsoleHandler) -> Handler:
    """``handler`` for signed-in admins only; a form also needs its CSRF token and to come
    from the gateway's own pages. A problem the handler raises (a policy that is not there,
    a bad parameter) is answered as an error page."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        posted = request.method == "POST"
        if posted and cross_site(request):
            return cross_site_refusal(request)
        found = await signed_in_admin(request)
        if found is None:
            return _signed_out(request)
        session, admin = found
        form: Mapping[str, object] = {}
        if posted:
            form = await read_form(request)
            presented = form_field(form, "csrf", 128)
            if not csrf_valid(services.keys.csrf, session.csrf_secret, presented, FORM_PURPOSE):
                return expired_form(request)
        call = Call(
            request=request,
            services=services,
            token=session_token(session, admin),
            now=services.clock(),
        )
        page = ConsolePage(
            call=call,
            session=session,
            admin=admin,
            csrf=csrf_token(services.keys.csrf, session.csrf_secret, FORM_PURPOSE),
            form=form,
        )
        try:
            return await handler(page)
        except ApiProblem as problem:
            return problem.response(request)

    return guarded


def admin_page(handler: PageHandler) -> Handler:
    """``console_page`` for a handler of (request, session, admin)."""
    return console_page(lambda page: handler(page.request, page.session, page.admin))


def admin_form(handler: FormHandler) -> Handler:
    """``console_page`` for a form's handler of (request, session, admin, form)."""
    return console_page(lambda page: handler(page.request, page.session, page.admin, page.form))

"""What every console page past the door shares: an open admin session, and for a form, a
post from the gateway's own pages carrying the session's CSRF token.

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
from gateway.http.requests import OUTCOME
from gateway.services import SERVICES, Services
from gateway.store import Admin
from gateway.web.context import read_form
from gateway.web.pages import expired_form, form_field, render_page


@dataclass(frozen=True, kw_only=True)
class ConsolePage:
    """One console request by a signed-in admin."""

    call: Call  # as the admin API sees it: the parts, one now, the actor, audit, refresh
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
        """A console page: the admin's name and the forms' CSRF token come with it."""
        full = {"admin_name": self.admin.name, "csrf": self.csrf, **context}
        return render_page(self.request, template, full, status=status)


ConsoleHandler = Callable[[ConsolePage], Awaitable[web.StreamResponse]]


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
            admin=admin,
            csrf=csrf_token(services.keys.csrf, session.csrf_secret, FORM_PURPOSE),
            form=form,
        )
        try:
            return await handler(page)
        except ApiProblem as problem:
            return problem.response(request)

    return guarded

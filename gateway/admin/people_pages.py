"""The console's pages for people: organisations and users found by a search, one user's
2FA state and linked tenants, why they are prompted, blocked or let through (Explain), and a
support reset of their 2FA with who checked their identity and why."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web

from gateway.admin.console_guard import (
    admin_form,
    admin_page,
    client_addr,
    console_actor,
    render_console,
)
from gateway.admin.http import ApiProblem, page_params, query_text
from gateway.admin.organisations import search_orgs
from gateway.admin.people import search_users, user_by_id, user_detail
from gateway.admin.reports import explanation_for
from gateway.admin.support import support_reset
from gateway.secondfactor.resets import MAX_SUPPORT_TEXT
from gateway.services import SERVICES
from gateway.store import Admin, AdminSession
from gateway.web.context import add_get, add_route
from gateway.web.pages import form_field

ORGS_PATH = "/_gateway/admin/orgs"
USERS_PATH = "/_gateway/admin/users"
USER_PATH = USERS_PATH + "/{user_id}"
METHOD_NAMES = {"totp": "authenticator app", "sms": "text messages"}


def _now(request: web.Request) -> dt.datetime:
    return dt.datetime.fromtimestamp(request.app[SERVICES].policy_clock(), dt.UTC)


def _next_page(request: web.Request, offset: int) -> str:
    return f"{request.path}?{urlencode({**request.query, 'offset': str(offset)})}"


async def orgs_page(request: web.Request, session: AdminSession, admin: Admin) -> web.Response:
    text = query_text(request, "q")
    limit, offset = page_params(request)
    found = await search_orgs(request.app[SERVICES], text, limit=limit, offset=offset)
    more = _next_page(request, found.next_offset) if found.more else None
    return render_console(
        request, session, admin, "admin_orgs.html", {"q": text, "orgs": found.orgs, "more": more}
    )


async def users_page(request: web.Request, session: AdminSession, admin: Admin) -> web.Response:
    services = request.app[SERVICES]
    text = query_text(request, "q")
    org = query_text(request, "org") or None
    limit, offset = page_params(request)
    found = await search_users(services, text, org_id=org, limit=limit, offset=offset)
    more = _next_page(request, found.next_offset) if found.more else None
    return render_console(
        request,
        session,
        admin,
        "admin_users.html",
        {"q": text, "org": org or "", "users": found.users, "more": more},
    )


async def _user_page(
    request: web.Request,
    session: AdminSession,
    admin: Admin,
    *,
    form: Mapping[str, str] | None = None,
    errors: list[str] | None = None,
    status: int = 200,
) -> web.Response:
    services = request.app[SERVICES]
    user = await user_by_id(services, request.match_info["user_id"])
    detail = await user_detail(services, user, _now(request))
    return render_console(
        request,
        session,
        admin,
        "admin_user.html",
        {
            "user": detail,
            "methods": [METHOD_NAMES.get(m, m) for m in detail.mfa.methods],
            "done": request.query.get("reset") == "done",
            "emailed": request.query.get("emailed") == "1",
            "form": form or {},
            "errors": errors or [],
            "max_text": MAX_SUPPORT_TEXT,
        },
        status=status,
    )


async def user_page(request: web.Request, session: AdminSession, admin: Admin) -> web.Response:
    return await _user_page(request, session, admin)


async def explain_page(request: web.Request, session: AdminSession, admin: Admin) -> web.Response:
    services = request.app[SERVICES]
    user = await user_by_id(services, request.match_info["user_id"])
    explained = await explanation_for(services, user, _now(request))
    return render_console(
        request, session, admin, "admin_user_explain.html", {"explained": explained}
    )


async def reset_submit(
    request: web.Request, session: AdminSession, admin: Admin, form: Mapping[str, object]
) -> web.StreamResponse:
    user_id = request.match_info["user_id"]
    typed = {
        "verified_by": form_field(form, "verified_by", MAX_SUPPORT_TEXT * 2),
        "reason": form_field(form, "reason", MAX_SUPPORT_TEXT * 2),
    }
    try:
        done = await support_reset(
            request.app[SERVICES],
            user_id,
            verified_by=typed["verified_by"],
            reason=typed["reason"],
            via="support-console",
            actor=console_actor(admin),
            client_addr=client_addr(request),
        )
    except ApiProblem as problem:
        if problem.status != 422:
            raise
        # Shown on the page, what was typed kept: nothing was changed.
        errors = [str(e) for e in problem.extra.get("errors", [])]
        return await _user_page(request, session, admin, form=typed, errors=errors, status=422)
    emailed = "1" if done.emailed else "0"
    raise web.HTTPSeeOther(
        f"{USERS_PATH}/{user_id}?{urlencode({'reset': 'done', 'emailed': emailed})}",
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    """The console's organisation and user pages; register before the /_gateway/ catch-all."""
    add_get(app, ORGS_PATH, admin_page(orgs_page))
    add_get(app, USERS_PATH, admin_page(users_page))
    add_get(app, USER_PATH, admin_page(user_page))
    add_get(app, USER_PATH + "/explain", admin_page(explain_page))
    add_route(app, "POST", USER_PATH + "/reset", admin_form(reset_submit))

"""The console's home: per policy, users in scope, enrolled and to be blocked at the
deadline, the days left, and a chart of enrolment over time (with the numbers as a table)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from aiohttp import web
from markupsafe import Markup

from gateway.admin.chart import enrolment_chart
from gateway.admin.console import CONSOLE_PATH, sign_in_page, signed_in_admin
from gateway.admin.console_guard import render_console
from gateway.admin.http import ApiProblem, int_param
from gateway.admin.people import DEFAULT_DAYS, enrolment_series
from gateway.enforcement.reports import readiness_report
from gateway.policy.progress import MAX_DAYS, days_left
from gateway.services import SERVICES
from gateway.web.context import add_get


async def dashboard_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form, or (signed in) the dashboard."""
    found = await signed_in_admin(request)
    if found is None:
        return sign_in_page(request)
    session, admin = found
    services = request.app[SERVICES]
    try:
        days = int_param(request, "days", default=DEFAULT_DAYS, minimum=1, maximum=MAX_DAYS)
    except ApiProblem as problem:
        return problem.response(request)
    at = dt.datetime.fromtimestamp(services.policy_clock(), dt.UTC)
    report = {
        item.policy_id: item
        for item in await readiness_report(services.store, at, services.decider.book.in_force())
    }
    policies = []
    for progress in await enrolment_series(services, at, days):
        policy = progress.policy
        item = report.get(policy.id)
        if item is None:  # stored between the two reads: on the next page load
            continue
        # Escaped where it is built: see gateway.admin.chart.
        chart = Markup(enrolment_chart(progress.days, in_scope=progress.in_scope, name=policy.id))  # noqa: S704
        policies.append(
            {
                "policy_id": policy.id,
                "enabled": item.enabled,
                "deadline": f"{item.deadline.astimezone(ZoneInfo(policy.timezone)):%Y-%m-%d %H:%M}",
                "timezone": policy.timezone,
                "days_left": days_left(policy.deadline, at, policy.timezone),
                "in_scope": item.in_scope,
                "enrolled": item.enrolled,
                "blocked_at_deadline": item.blocked_at_deadline,
                "chart": chart,
                "series": progress.days,
                "series_in_scope": progress.in_scope,
            }
        )
    return render_console(
        request,
        session,
        admin,
        "admin_dashboard.html",
        {"at": at.isoformat(timespec="minutes"), "days": days, "policies": policies},
    )


def add_routes(app: web.Application) -> None:
    """The console's home page; register before the /_gateway/ catch-all."""
    add_get(app, CONSOLE_PATH, dashboard_page)

"""The console's policy pages: the list, one policy (its TOML and what it decides), the TOML
editor with preview (problems and lint warnings on their lines, and the changes a save would
make), enable and disable, the history, any version, and the diff of any two.

Every change goes through the functions the admin API's routes call (gateway.admin.policies),
so it is checked, audited and put in force the same way. A save names the version the admin
started editing from, as the API's If-Match does: when someone saved in between, nothing is
overwritten, and the admin is told who changed what.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.admin.console import CONSOLE_PATH
from gateway.admin.console_guard import ConsolePage, console_page
from gateway.admin.http import ApiProblem
from gateway.admin.policies import (
    changes_to,
    current_policy,
    diff_range,
    document_of,
    lint_warnings,
    parse_stored,
    policy_version,
    policy_versions,
    save_policy,
    switch_policy,
    version_changes,
    version_number,
)
from gateway.admin.policy_text import Checked, check_text, numbered
from gateway.policy import Policy, format_duration
from gateway.policy.writer import write_toml
from gateway.store import PolicyVersion as StoredVersion
from gateway.store import StoredPolicy
from gateway.web.context import add_get, add_route
from gateway.web.pages import form_field

PAGES = f"{CONSOLE_PATH}policies"
# A policy's TOML is about 3 KiB with its comments. The front listener refuses a body over
# 64 KiB (413) before this reads it, so the text is never cut short here.
MAX_TEXT = 64 * 1024
# What a save or a switch left, named in the address it redirects to; never text from it.
DONE = {
    "saved": "Saved. It is in force from the next request.",
    "unchanged": "Nothing changed: that is how the policy already was.",
    "enabled": "Enabled. It is in force from the next request.",
    "disabled": "Disabled. Nobody is prompted or blocked by it from the next request.",
}


def _url(policy_id: str, tail: str = "") -> str:
    return f"{PAGES}/{quote(policy_id, safe='')}{tail}"


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _shown(changes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Changes as the pages show them: each side as JSON text, absent when there is none."""
    return [
        {
            "path": c["path"],
            "kind": c["kind"],
            "before": _json(c["before"]) if "before" in c else None,
            "after": _json(c["after"]) if "after" in c else None,
        }
        for c in changes
    ]


def _names(values: Iterable[str]) -> str:
    return ", ".join(sorted(values)) or "none"


def _deadline(policy: Policy, now: float) -> str:
    left = policy.deadline.timestamp() - now
    if left < 0:
        return f"{policy.deadline.isoformat()} (passed: users in scope without 2FA are blocked)"
    days = math.ceil(left / 86400)
    return f"{policy.deadline.isoformat()} ({days} day{'s' if days != 1 else ''} left)"


def _decides(policy: Policy, now: float) -> list[tuple[str, str]]:
    """What the policy decides, in words: scope, dates, methods, windows."""
    scope = (
        f"Users with the role {' or '.join(sorted(policy.roles))} in organisations with an"
        f" active Xero connection to a tenant in {_names(policy.countries)}"
    )
    if not policy.requires_xero_connection:
        scope += ", and of organisations with no active Xero connection"
    cap = policy.max_dismissals
    return [
        ("Scope", scope),
        ("Prompted from", policy.announce.isoformat()),
        ("Deadline", _deadline(policy, now)),
        ("Time zone", policy.timezone),
        ("Primary methods", _names(policy.primary_methods)),
        ("Backup methods", _names(policy.backup_methods)),
        ("Backup required for", _names(policy.backup_required_for)),
        ("Remind me later", "no limit" if cap is None else f"at most {cap} times"),
        ("Code lifetime", format_duration(policy.code_lifetime)),
        ("Step lifetime", format_duration(policy.step_lifetime)),
        ("Remember device", format_duration(policy.remember_device)),
        ("Service refresh window", format_duration(policy.service_refresh_window)),
        (
            "Failed attempts",
            f"{policy.max_failed_attempts}, then locked for {format_duration(policy.lockout)}",
        ),
        ("Reminder emails", ", ".join(f"{d}" for d in policy.reminder_days) + " days before"),
    ]


def _started(form: Mapping[str, object]) -> int | None:
    """The version the admin opened the form at (the console's If-Match); None if garbled."""
    text = form_field(form, "version", 12).strip()
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 2**31 else None


def _changed_since(stored: StoredPolicy) -> str:
    return (
        f"This policy was changed since you opened it, by {stored.updated_by} at"
        f" {_when(stored.updated_at)}; it is now version {stored.version}."
    )


async def list_page(page: ConsolePage) -> web.StreamResponse:
    rows = []
    for stored in await page.services.store.policies.list():
        policy, _ = parse_stored(stored)
        rows.append(
            {
                "id": stored.id,
                "url": _url(stored.id),
                "enabled": stored.enabled,
                "valid": policy is not None,
                "region": _names(policy.countries) if policy else "",
                "deadline": policy.deadline.isoformat() if policy else "",
                "methods": _names(policy.primary_methods) if policy else "",
                "backup": _names(policy.backup_methods) if policy else "",
                "version": stored.version,
                "updated_by": stored.updated_by,
                "updated_at": _when(stored.updated_at),
            }
        )
    return page.render("admin_policies.html", {"policies": rows})


def _view(
    page: ConsolePage, stored: StoredPolicy, *, error: str | None = None, status: int = 200
) -> web.Response:
    policy, problems = parse_stored(stored)
    done = page.request.query.get("done", "")
    context = {
        "policy_id": stored.id,
        "url": _url(stored.id),
        "version": stored.version,
        "enabled": stored.enabled,
        "updated_by": stored.updated_by,
        "updated_at": _when(stored.updated_at),
        "decides": _decides(policy, page.call.policy_now) if policy else [],
        "problems": problems,
        "warnings": lint_warnings(policy, page.call.policy_now) if policy else [],
        "text": write_toml(document_of(stored.document, stored.enabled)),
        "notice": DONE.get(done) if status == 200 else None,
        "error": error,
    }
    return page.render("admin_policy.html", context, status=status)


async def view_page(page: ConsolePage) -> web.StreamResponse:
    return _view(page, await current_policy(page.call, page.path("policy_id")))


async def _stale(page: ConsolePage, current: StoredPolicy, started: int) -> dict[str, Any]:
    """Who changed the policy since ``started``, when, and what they changed."""
    opened = await policy_version(page.call, current.id, started)
    latest = await policy_version(page.call, current.id, current.version)
    return {
        "message": _changed_since(current),
        "changes": _shown(version_changes(opened, latest)),
        "reopen": _url(current.id, "/edit"),
    }


async def _editor(
    page: ConsolePage,
    current: StoredPolicy,
    *,
    text: str,
    started: int | None,
    checked: Checked | None = None,
) -> web.Response:
    """The editor with ``text``; after a preview or a refused save, with what was found."""
    stale = None
    if started is not None and started != current.version:
        stale = await _stale(page, current, started)
    policy = checked.policy if checked is not None else None
    error = None
    if started is None:
        error = "This form does not say which version you started from, so nothing was saved."
        error += " Open the policy again to edit it."
    elif checked is not None and policy is None:
        count = len(checked.errors)
        error = f"The text has {count} problem{'s' if count != 1 else ''}; nothing was saved."
    status = 200
    if started is None:
        status = 400
    elif policy is None and checked is not None:
        status = 422
    elif stale is not None:
        status = 409
    context = {
        "policy_id": current.id,
        "url": _url(current.id),
        "text": text,
        "started": "" if started is None else started,
        "checked": checked is not None,
        "notes": checked.notes if checked else (),
        "lines": numbered(text, checked.notes) if checked else [],
        "changes": _shown(changes_to(current, policy)) if policy and not stale else None,
        "stale": stale,
        "error": error,
    }
    return page.render("admin_policy_edit.html", context, status=status)


async def edit_page(page: ConsolePage) -> web.StreamResponse:
    current = await current_policy(page.call, page.path("policy_id"))
    text = write_toml(document_of(current.document, current.enabled))
    return await _editor(page, current, text=text, started=current.version)


async def edit_submit(page: ConsolePage) -> web.StreamResponse:
    """Preview (check and show what would change) or save the text; a save only from the
    version the admin started at, and only of a text without problems."""
    current = await current_policy(page.call, page.path("policy_id"))
    text = form_field(page.form, "toml", MAX_TEXT)
    started = _started(page.form)
    if started is not None and started > current.version:
        started = None  # names no version there has been: garbled
    checked = check_text(text, current.id, page.call.policy_now)
    saving = form_field(page.form, "action", 16) == "save"
    if saving and checked.policy is not None and started == current.version:
        try:
            change = await save_policy(page.call, checked.policy, expected_version=started)
        except ApiProblem as problem:
            if problem.status != 412:
                raise
            current = await current_policy(page.call, current.id)  # someone saved first
        else:
            done = "saved" if change.changed else "unchanged"
            raise web.HTTPSeeOther(f"{_url(current.id)}?done={done}")
    return await _editor(page, current, text=text, started=started, checked=checked)


async def _switch(page: ConsolePage, *, enabled: bool) -> web.StreamResponse:
    policy_id = page.path("policy_id")
    started = _started(page.form)
    if started is None:
        stored = await current_policy(page.call, policy_id)
        error = "This form does not say which version you saw, so nothing was changed."
        return _view(page, stored, error=error, status=400)
    try:
        change = await switch_policy(
            page.call, policy_id, enabled=enabled, expected_version=started
        )
    except ApiProblem as problem:
        if problem.status != 412:
            raise
        stored = await current_policy(page.call, policy_id)
        error = f"{_changed_since(stored)} Nothing was changed: check it below and try again."
        return _view(page, stored, error=error, status=409)
    done = ("enabled" if enabled else "disabled") if change.changed else "unchanged"
    raise web.HTTPSeeOther(f"{_url(policy_id)}?done={done}")


async def enable_submit(page: ConsolePage) -> web.StreamResponse:
    return await _switch(page, enabled=True)


async def disable_submit(page: ConsolePage) -> web.StreamResponse:
    return await _switch(page, enabled=False)


def _entry(policy_id: str, entry: StoredVersion) -> dict[str, Any]:
    return {
        "version": entry.version,
        "change": entry.change,
        "enabled": entry.enabled,
        "at": _when(entry.at),
        "by": entry.by,
        "url": _url(policy_id, f"/versions/{entry.version}"),
    }


async def history_page(page: ConsolePage) -> web.StreamResponse:
    policy_id = page.path("policy_id")
    history = await policy_versions(page.call, policy_id)
    rows = [
        {
            **_entry(policy_id, entry),
            "diff_url": _url(policy_id, f"/diff?from={before.version}&to={entry.version}")
            if before is not None
            else None,
        }
        for before, entry in zip([None, *history], history, strict=False)
    ]
    context = {
        "policy_id": policy_id,
        "url": _url(policy_id),
        "versions": list(reversed(rows)),
        "numbers": [e.version for e in reversed(history)],
        "older": history[-2].version if len(history) > 1 else history[-1].version,
        "newer": history[-1].version,
    }
    return page.render("admin_policy_history.html", context)


async def version_page(page: ConsolePage) -> web.StreamResponse:
    policy_id = page.path("policy_id")
    number = version_number(page.path("version"), policy_id)
    entry = await policy_version(page.call, policy_id, number)
    context = {
        "policy_id": policy_id,
        "url": _url(policy_id),
        "entry": _entry(policy_id, entry),
        "text": write_toml(document_of(entry.document, entry.enabled)),
        "previous_diff": _url(policy_id, f"/diff?from={number - 1}&to={number}")
        if number > 1
        else None,
    }
    return page.render("admin_policy_version.html", context)


async def diff_page(page: ConsolePage) -> web.StreamResponse:
    policy_id = page.path("policy_id")
    older, newer = await diff_range(page.call, policy_id)
    history = await policy_versions(page.call, policy_id)
    context = {
        "policy_id": policy_id,
        "url": _url(policy_id),
        "older": _entry(policy_id, older),
        "newer": _entry(policy_id, newer),
        "changes": _shown(version_changes(older, newer)),
        "numbers": [e.version for e in reversed(history)],
    }
    return page.render("admin_policy_diff.html", context)


def add_routes(app: web.Application) -> None:
    """The policy pages; register before the /_gateway/ catch-all."""
    one = f"{PAGES}/{{policy_id}}"
    add_get(app, PAGES, console_page(list_page))
    add_get(app, one, console_page(view_page))
    add_get(app, f"{one}/edit", console_page(edit_page))
    add_route(app, "POST", f"{one}/edit", console_page(edit_submit))
    add_route(app, "POST", f"{one}/enable", console_page(enable_submit))
    add_route(app, "POST", f"{one}/disable", console_page(disable_submit))
    add_get(app, f"{one}/history", console_page(history_page))
    add_get(app, f"{one}/versions/{{version}}", console_page(version_page))
    add_get(app, f"{one}/diff", console_page(diff_page))

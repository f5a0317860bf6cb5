"""Admin API handlers for policies: read, write with If-Match, enable, disable, history, diff."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from gateway.admin.diff import diff_documents
from gateway.admin.http import (
    ADMIN_PREFIX,
    ApiProblem,
    Call,
    if_match,
    instant,
    int_param,
    json_response,
    not_found,
    precondition_failed,
    read_body,
    unprocessable,
)
from gateway.enforcement import policy_files
from gateway.errors import ConflictError, NotFoundError
from gateway.policy import Policy, PolicyError, lint, parse_policy
from gateway.schema.policies import (
    HistoryEntry,
    LintWarning,
    PolicyDeleted,
    PolicyDiff,
    PolicyDocument,
    PolicyHistory,
    PolicyList,
    PolicyRecord,
    PolicySummary,
    PolicyVersion,
    PolicyWritten,
)
from gateway.store import PolicyVersion as StoredVersion
from gateway.store import PreconditionFailedError, StoredPolicy, policy_document

POLICIES = f"{ADMIN_PREFIX}/policies"
# Store versions are SQLite integers; a larger number names no version (and would overflow).
_MAX_VERSION = 2**31


def document_of(document: dict[str, Any], enabled: bool) -> dict[str, Any]:
    """The document with the stored enabled flag in it, as the store audits it."""
    return policy_document(document, enabled)


def _record(stored: StoredPolicy) -> dict[str, Any]:
    """What every answer about a stored policy says of it (PolicyRecord's fields)."""
    return {
        "id": stored.id,
        "version": stored.version,
        "enabled": stored.enabled,
        "updated_at": instant(stored.updated_at),
        "updated_by": stored.updated_by,
        "document": PolicyDocument(document_of(stored.document, stored.enabled)),
    }


def _history(entry: StoredVersion) -> dict[str, Any]:
    """What every answer about a version says of it (HistoryEntry's fields)."""
    return {
        "version": entry.version,
        "change": entry.change,
        "enabled": entry.enabled,
        "at": instant(entry.at),
        "by": entry.by,
    }


def _policy_not_found(policy_id: str) -> ApiProblem:
    return not_found("policy-not-found", f"There is no policy {policy_id!r}.")


async def _current(call: Call, policy_id: str) -> StoredPolicy:
    try:
        return await call.services.store.policies.get(policy_id)
    except NotFoundError:
        raise _policy_not_found(policy_id) from None


async def _checked(call: Call, policy_id: str) -> StoredPolicy:
    """The policy as it stands, if If-Match names its version; 428, 404 or 412 otherwise.

    The write that follows passes this version to the store as well, so a change slipping in
    between still fails there (compare-and-swap), never overwritten.
    """
    versions = if_match(call.request)
    current = await _current(call, policy_id)
    if current.version not in versions:
        raise precondition_failed(policy_id, current.version)
    return current


_invalid = unprocessable("policy-invalid", "The policy document is invalid", "document")


async def _read_policy(call: Call, *, url_id: str | None) -> Policy:
    """The body as a Policy; 422 listing every problem (and a mismatched id) otherwise.

    The body's model is PolicyDocument, whose schema is derived from the policy's declared
    fields; the policy parser judges the fields, as it does for files, with the same messages.
    """
    data = (await read_body(call.request, PolicyDocument, _invalid)).root
    errors: list[str] = []
    policy: Policy | None = None
    try:
        policy = parse_policy(data)
    except PolicyError as exc:
        errors.extend(exc.problems)
    given = data.get("id")
    if url_id is not None and isinstance(given, str) and given != url_id:
        errors.append(f"id: must be {url_id!r}, the id in the URL, not {given!r}")
    if errors or policy is None:
        raise _invalid(errors)
    return policy


def _warnings(call: Call, policy: Policy) -> list[LintWarning]:
    """Lint warnings: advice returned with the change, never a reason to refuse it."""
    when = dt.datetime.fromtimestamp(call.now, dt.UTC)
    return [LintWarning(field=w.field, message=w.message) for w in lint(policy, now=when)]


@contextmanager
def _writing(policy_id: str) -> Iterator[None]:
    """Turn the store's refusals of a policy write into the API's problems."""
    try:
        yield
    except PreconditionFailedError as exc:
        raise _stale(exc) from None
    except NotFoundError:
        raise _policy_not_found(policy_id) from None


def _stale(exc: PreconditionFailedError) -> ApiProblem:
    # Another write landed between our read and our compare-and-swap; the store says which.
    return ApiProblem(412, "precondition-failed", "The policy has changed", str(exc))


async def list_policies(call: Call) -> web.StreamResponse:
    items = []
    for stored in await call.services.store.policies.list():
        try:
            parse_policy(document_of(stored.document, stored.enabled))
            valid = True
        except PolicyError:
            valid = False  # enforced as the version in force, or not at: show it to be fixed
        items.append(
            PolicySummary(
                id=stored.id,
                version=stored.version,
                enabled=stored.enabled,
                valid=valid,
                description=str(stored.document.get("description", "")),
                updated_at=instant(stored.updated_at),
                updated_by=stored.updated_by,
            )
        )
    return json_response(PolicyList(policies=items))


async def get_policy(call: Call) -> web.StreamResponse:
    stored = await _current(call, call.path("policy_id"))
    return json_response(PolicyRecord(**_record(stored)), version=stored.version)


async def create_policy(call: Call) -> web.StreamResponse:
    policy = await _read_policy(call, url_id=None)
    try:
        change = await policy_files.create_policy(
            call.services.store, policy, now=call.now, audit=call.audit
        )
    except ConflictError:
        raise ApiProblem(
            409,
            "policy-exists",
            "The policy exists",
            f"A policy {policy.id!r} exists already; replace it with PUT {POLICIES}/{policy.id}.",
        ) from None
    await call.refresh()
    stored = change.after
    return json_response(
        PolicyWritten(**_record(stored), warnings=_warnings(call, policy)),
        status=201,
        version=stored.version,
        headers={"Location": f"{POLICIES}/{policy.id}"},
    )


async def replace_policy(call: Call) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    versions = if_match(call.request)  # before the body: a missing If-Match is the first error
    policy = await _read_policy(call, url_id=policy_id)
    before = await _current(call, policy_id)
    if before.version not in versions:
        raise precondition_failed(policy_id, before.version)
    with _writing(policy_id):
        change = await policy_files.replace_policy(
            call.services.store,
            policy,
            expected_version=before.version,
            now=call.now,
            audit=call.audit,
        )
    if change.changed:  # the same document again is no change: no new version, no audit event
        await call.refresh()
    stored = change.after
    return json_response(
        PolicyWritten(**_record(stored), changed=change.changed, warnings=_warnings(call, policy)),
        version=stored.version,
    )


async def _set_enabled(call: Call, enabled: bool) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    before = await _checked(call, policy_id)
    with _writing(policy_id):
        change = await call.services.store.policies.set_enabled(
            policy_id=policy_id,
            enabled=enabled,
            expected_version=before.version,
            now=call.now,
            by=call.actor,
            audit=call.audit,
        )
    if change.changed:
        await call.refresh()
    stored = change.after
    return json_response(
        PolicyWritten(**_record(stored), changed=change.changed), version=stored.version
    )


async def enable_policy(call: Call) -> web.StreamResponse:
    return await _set_enabled(call, True)


async def disable_policy(call: Call) -> web.StreamResponse:
    return await _set_enabled(call, False)


async def delete_policy(call: Call) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    before = await _checked(call, policy_id)
    with _writing(policy_id):
        entry = await call.services.store.policies.delete(
            policy_id=policy_id,
            expected_version=before.version,
            now=call.now,
            by=call.actor,
            audit=call.audit,
        )
    await call.refresh()
    # No ETag: there is no policy left for one to describe. The history keeps the version.
    return json_response(PolicyDeleted(id=policy_id, **_history(entry)))


async def _versions(call: Call, policy_id: str) -> list[StoredVersion]:
    history = await call.services.store.policies.history(policy_id)
    if not history:
        raise _policy_not_found(policy_id)
    return history


async def list_versions(call: Call) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    history = await _versions(call, policy_id)
    return json_response(
        PolicyHistory(id=policy_id, versions=[HistoryEntry(**_history(e)) for e in history])
    )


def _version_number(text: str, policy_id: str) -> int:
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0
    if not 1 <= number < _MAX_VERSION:
        raise not_found("version-not-found", f"Policy {policy_id!r} has no version {text}.")
    return number


async def _version(call: Call, policy_id: str, number: int) -> StoredVersion:
    try:
        return await call.services.store.policies.version(policy_id, number)
    except NotFoundError:
        raise not_found(
            "version-not-found", f"Policy {policy_id!r} has no version {number}."
        ) from None


async def get_version(call: Call) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    entry = await _version(call, policy_id, _version_number(call.path("version"), policy_id))
    return json_response(
        PolicyVersion(
            id=policy_id,
            **_history(entry),
            document=PolicyDocument(document_of(entry.document, entry.enabled)),
        )
    )


async def diff_versions(call: Call) -> web.StreamResponse:
    """Changes from version ``from`` to ``to``: by default, those of the latest change."""
    policy_id = call.path("policy_id")
    history = await _versions(call, policy_id)
    to = int_param(call.request, "to", default=history[-1].version, minimum=1, maximum=_MAX_VERSION)
    start = int_param(call.request, "from", default=max(to - 1, 1), minimum=1, maximum=_MAX_VERSION)
    older = await _version(call, policy_id, start)
    newer = await _version(call, policy_id, to)
    return json_response(
        PolicyDiff.model_validate(
            {
                "id": policy_id,
                "from": _history(older),
                "to": _history(newer),
                "changes": diff_documents(
                    document_of(older.document, older.enabled),
                    document_of(newer.document, newer.enabled),
                ),
            }
        )
    )

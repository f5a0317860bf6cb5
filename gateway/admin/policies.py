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
from gateway.policy import Policy, PolicyError, lint, parse_policy, policy_to_document
from gateway.schema.policies import (
    Change,
    HistoryEntry,
    LintWarning,
    PolicyDeleted,
    PolicyDiff,
    PolicyDocument,
    PolicyHistory,
    PolicyLint,
    PolicyList,
    PolicyRecord,
    PolicySummary,
    PolicyVersion,
    PolicyWritten,
)
from gateway.store import PolicyChange, PreconditionFailedError, StoredPolicy, policy_document
from gateway.store import PolicyVersion as StoredVersion

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


async def current_policy(call: Call, policy_id: str) -> StoredPolicy:
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
    current = await current_policy(call, policy_id)
    if current.version not in versions:
        raise precondition_failed(policy_id, current.version)
    return current


_invalid = unprocessable("policy-invalid", "The policy document is invalid", "document")


def id_problem(url_id: str, given: object) -> str | None:
    """The problem with a document naming another policy than the one being replaced."""
    if isinstance(given, str) and given != url_id:
        return f"id: must be {url_id!r}, the id in the URL, not {given!r}"
    return None


def _judged(data: dict[str, Any], url_id: str | None) -> tuple[Policy | None, list[str]]:
    """The document as a Policy, or every problem with it (a mismatched id among them)."""
    errors: list[str] = []
    policy: Policy | None = None
    try:
        policy = parse_policy(data)
    except PolicyError as exc:
        errors.extend(exc.problems)
    mismatch = id_problem(url_id, data.get("id")) if url_id is not None else None
    if mismatch is not None:
        errors.append(mismatch)
    return (None if errors else policy), errors


async def _read_policy(call: Call, *, url_id: str | None) -> Policy:
    """The body as a Policy; 422 listing every problem (and a mismatched id) otherwise.

    The body's model is PolicyDocument, whose schema is derived from the policy's declared
    fields; the policy parser judges the fields, as it does for files, with the same messages.
    """
    data = (await read_body(call.request, PolicyDocument, _invalid)).root
    policy, errors = _judged(data, url_id)
    if policy is None:
        raise _invalid(errors)
    return policy


def lint_warnings(policy: Policy, now: float) -> list[LintWarning]:
    """Lint warnings at ``now``: advice returned with a change, never a reason to refuse it."""
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    return [LintWarning(field=w.field, message=w.message) for w in lint(policy, now=when)]


def changes_to(current: StoredPolicy, policy: Policy) -> list[dict[str, Any]]:
    """What replacing the stored policy with ``policy`` would change, by dotted path."""
    return diff_documents(
        document_of(current.document, current.enabled), policy_to_document(policy)
    )


def version_changes(older: StoredVersion, newer: StoredVersion) -> list[dict[str, Any]]:
    """What changed from one version of a policy to another, by dotted path."""
    return diff_documents(
        document_of(older.document, older.enabled), document_of(newer.document, newer.enabled)
    )


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


def parse_stored(stored: StoredPolicy) -> tuple[Policy | None, list[str]]:
    """The stored document as a Policy, or why it no longer parses (after an upgrade, say):
    then it is enforced as the version in force, or not at all, and shown to be fixed."""
    try:
        return parse_policy(document_of(stored.document, stored.enabled)), []
    except PolicyError as exc:
        return None, exc.problems


async def list_policies(call: Call) -> web.StreamResponse:
    items = []
    for stored in await call.services.store.policies.list():
        policy, _ = parse_stored(stored)
        items.append(
            PolicySummary(
                id=stored.id,
                version=stored.version,
                enabled=stored.enabled,
                valid=policy is not None,
                description=str(stored.document.get("description", "")),
                updated_at=instant(stored.updated_at),
                updated_by=stored.updated_by,
            )
        )
    return json_response(PolicyList(policies=items))


async def get_policy(call: Call) -> web.StreamResponse:
    stored = await current_policy(call, call.path("policy_id"))
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
        PolicyWritten(**_record(stored), warnings=lint_warnings(policy, call.policy_now)),
        status=201,
        version=stored.version,
        headers={"Location": f"{POLICIES}/{policy.id}"},
    )


async def replace_policy(call: Call) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    versions = if_match(call.request)  # before the body: a missing If-Match is the first error
    policy = await _read_policy(call, url_id=policy_id)
    before = await current_policy(call, policy_id)
    if before.version not in versions:
        raise precondition_failed(policy_id, before.version)
    change = await save_policy(call, policy, expected_version=before.version)
    stored = change.after
    return json_response(
        PolicyWritten(
            **_record(stored),
            changed=change.changed,
            warnings=lint_warnings(policy, call.policy_now),
        ),
        version=stored.version,
    )


async def save_policy(call: Call, policy: Policy, *, expected_version: int) -> PolicyChange:
    """Replace the stored policy with ``policy`` if it is still at ``expected_version``.

    Audited, and in force from the next request; the same document again changes nothing (no
    new version, no audit event). 412 if the version is stale, 404 if the policy is gone.
    """
    with _writing(policy.id):
        change = await policy_files.replace_policy(
            call.services.store,
            policy,
            expected_version=expected_version,
            now=call.now,
            audit=call.audit,
        )
    if change.changed:
        await call.refresh()
    return change


async def switch_policy(
    call: Call, policy_id: str, *, enabled: bool, expected_version: int
) -> PolicyChange:
    """Enable or disable a policy still at ``expected_version``: audited, in force from the
    next request; no change if it is so already. 412 if the version is stale, 404 if gone."""
    with _writing(policy_id):
        change = await call.services.store.policies.set_enabled(
            policy_id=policy_id,
            enabled=enabled,
            expected_version=expected_version,
            now=call.now,
            by=call.actor,
            audit=call.audit,
        )
    if change.changed:
        await call.refresh()
    return change


async def _set_enabled(call: Call, enabled: bool) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    before = await _checked(call, policy_id)
    change = await switch_policy(call, policy_id, enabled=enabled, expected_version=before.version)
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


async def policy_versions(call: Call, policy_id: str) -> list[StoredVersion]:
    history = await call.services.store.policies.history(policy_id)
    if not history:
        raise _policy_not_found(policy_id)
    return history


async def list_versions(call: Call) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    history = await policy_versions(call, policy_id)
    return json_response(
        PolicyHistory(id=policy_id, versions=[HistoryEntry(**_history(e)) for e in history])
    )


def version_number(text: str, policy_id: str) -> int:
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0
    if not 1 <= number < _MAX_VERSION:
        raise not_found("version-not-found", f"Policy {policy_id!r} has no version {text}.")
    return number


async def policy_version(call: Call, policy_id: str, number: int) -> StoredVersion:
    try:
        return await call.services.store.policies.version(policy_id, number)
    except NotFoundError:
        raise not_found(
            "version-not-found", f"Policy {policy_id!r} has no version {number}."
        ) from None


async def get_version(call: Call) -> web.StreamResponse:
    policy_id = call.path("policy_id")
    entry = await policy_version(call, policy_id, version_number(call.path("version"), policy_id))
    return json_response(
        PolicyVersion(
            id=policy_id,
            **_history(entry),
            document=PolicyDocument(document_of(entry.document, entry.enabled)),
        )
    )


async def diff_range(call: Call, policy_id: str) -> tuple[StoredVersion, StoredVersion]:
    """The versions the query's ``from`` and ``to`` name: by default, the latest change's."""
    history = await policy_versions(call, policy_id)
    to = int_param(call.request, "to", default=history[-1].version, minimum=1, maximum=_MAX_VERSION)
    start = int_param(call.request, "from", default=max(to - 1, 1), minimum=1, maximum=_MAX_VERSION)
    return await policy_version(call, policy_id, start), await policy_version(call, policy_id, to)


async def diff_versions(call: Call) -> web.StreamResponse:
    """Changes from version ``from`` to ``to``: by default, those of the latest change."""
    policy_id = call.path("policy_id")
    older, newer = await diff_range(call, policy_id)
    return json_response(
        PolicyDiff.model_validate(
            {
                "id": policy_id,
                "from": _history(older),
                "to": _history(newer),
                "changes": version_changes(older, newer),
            }
        )
    )


async def lint_policy(call: Call) -> web.StreamResponse:
    """What replacing the policy with the body would do, without doing it: 422 with every
    problem if a replace would be refused (as PUT answers), else the lint warnings it would
    get and the changes it would make."""
    policy_id = call.path("policy_id")
    current = await current_policy(call, policy_id)
    policy = await _read_policy(call, url_id=policy_id)
    return json_response(
        PolicyLint(
            id=policy_id,
            version=current.version,
            warnings=lint_warnings(policy, call.policy_now),
            changes=[Change(**c) for c in changes_to(current, policy)],
        ),
        version=current.version,
    )

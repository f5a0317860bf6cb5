"""Audit events are types: every kind is listed, stored as before, and named in one module."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from gateway import audit
from gateway.audit import EVENTS, Event, event_row
from gateway.store import AuditEvent, Store, event_document

# The events package (gateway/audit/) spells the kinds; the rest of gateway/ never does.
EVENTS_PACKAGE = Path(audit.__file__).resolve().parent
PACKAGE = EVENTS_PACKAGE.parent
POLICY_DOC = {"id": "p", "enabled": True, "scope": {"countries": ["AU"]}}
TENANT_DOC = {"tenant_id": "t-1", "country_code": "AU", "active": True}

# One example of every kind, as the gateway records it.
SAMPLES: dict[str, Event] = {
    "org.added": audit.OrgAdded(org_id="org_1", name="Harbour"),
    "user.added": audit.UserAdded(
        user_id="usr_1", org_id="org_1", email="a@h.example", role="member"
    ),
    "user.disabled": audit.UserDisabled(user_id="usr_1", org_id="org_1"),
    "user.enabled": audit.UserEnabled(user_id="usr_1", org_id="org_1"),
    "user.imported": audit.UsersImported(
        count=1, users=({"id": "usr_1", "email": "a@h.example", "org_id": "org_1"},)
    ),
    "login.throttled": audit.LoginThrottled(typed="abc"),
    "login.failed": audit.LoginFailed(account_id=None, reason="unknown-user", typed="abc"),
    "login.succeeded": audit.LoginSucceeded(user_id="usr_1", org_id="org_1"),
    "logout": audit.LoggedOut(user_id="usr_1", org_id="org_1"),
    "mfa.prompt_dismissed": audit.PromptDismissed(
        user_id="usr_1", org_id="org_1", policies=("au-ato-2fa",), dismissals=2, cap=None
    ),
    "mfa.enrolled": audit.MfaEnrolled(
        user_id="usr_1", org_id="org_1", method="totp", role="primary", recovery_codes=10
    ),
    "mfa.passed": audit.MfaPassed(user_id="usr_1", org_id="org_1", method="recovery"),
    "mfa.failed": audit.MfaFailed(
        user_id="usr_1", org_id="org_1", method="totp", reason="replayed", stage="challenge"
    ),
    "mfa.locked": audit.MfaLocked(
        user_id="usr_1", org_id="org_1", failures=5, until=1_800_000_900.0
    ),
    "mfa.device_remembered": audit.DeviceRemembered(
        user_id="usr_1", org_id="org_1", expires_at=1_800_082_800.0, label="Firefox"
    ),
    "mfa.recovery_code_used": audit.RecoveryCodeUsed(user_id="usr_1", org_id="org_1", remaining=9),
    "mfa.reset": audit.MfaReset(
        user_id="usr_2",
        org_id="org_1",
        via="support-cli",
        by="cli",
        reason="lost phone",
        verified_by="Sam (video call, photo ID)",
        factors=2,
        recovery_codes=10,
        devices=1,
        sessions=2,
    ),
    "mfa.primary_changed": audit.MfaPrimaryChanged(
        user_id="usr_1", org_id="org_1", method="sms", previous="totp", to="+61 4•• ••• 678"
    ),
    "mfa.backup_changed": audit.MfaBackupChanged(
        user_id="usr_1", org_id="org_1", method="email", to="a•••@h.example", previous="sms"
    ),
    "mfa.recovery_codes_regenerated": audit.RecoveryCodesRegenerated(
        user_id="usr_1", org_id="org_1", codes=10, unused_replaced=9
    ),
    "mfa.devices_forgotten": audit.DevicesForgotten(
        user_id="usr_1", org_id="org_1", devices=1, label="Firefox"
    ),
    "policy.created": audit.PolicyCreated(policy_id="p", before=None, after=POLICY_DOC, version=1),
    "policy.replaced": audit.PolicyReplaced(
        policy_id="p", before=POLICY_DOC, after=POLICY_DOC, version=2
    ),
    "policy.enabled": audit.PolicyEnabled(
        policy_id="p", before=POLICY_DOC, after=POLICY_DOC, version=3
    ),
    "policy.disabled": audit.PolicyDisabled(
        policy_id="p", before=POLICY_DOC, after=POLICY_DOC, version=4
    ),
    "policy.deleted": audit.PolicyDeleted(policy_id="p", before=POLICY_DOC, after=None, version=5),
    "org.tenant_linked": audit.TenantLinked(
        tenant_id="t-1",
        org_id="org_1",
        before=None,
        after=TENANT_DOC,
        name="Harbour Pty",
        country_code="AU",
    ),
    "org.tenant_unlinked": audit.TenantUnlinked(
        tenant_id="t-1", org_id="org_1", before=TENANT_DOC, after=TENANT_DOC
    ),
    "admin_token.created": audit.AdminTokenCreated(
        token_id="tok_1", name="ops", scopes=("admin",), expires_at=1_800_000_000.0
    ),
    "admin_token.revoked": audit.AdminTokenRevoked(token_id="tok_1"),
    "admin.added": audit.AdminAdded(admin_id="adm_1", email="ops@gw.example", name="Ops"),
    "admin.disabled": audit.AdminDisabled(admin_id="adm_1"),
    "admin.signed_in": audit.AdminSignedIn(admin_id="adm_1"),
    "admin.sign_in_failed": audit.AdminSignInFailed(
        admin_id=None, reason="unknown-admin", typed="abc"
    ),
    "admin.signed_out": audit.AdminSignedOut(admin_id="adm_1"),
    "mfa.code_sent": audit.CodeSent(
        user_id="usr_1", org_id="org_1", purpose="challenge", channel="sms", to="+61 ••• ••• 678"
    ),
    "mfa.code_send_failed": audit.CodeSendFailed(
        user_id="usr_1",
        org_id=None,
        purpose="enrol-backup",
        channel="email",
        to="a•••@example.com",
        reason="The mail server refused the address.",
    ),
    "mfa.code_send_limited": audit.CodeSendLimited(
        user_id="usr_1",
        org_id="org_1",
        purpose="challenge",
        channel="sms",
        to="+61 ••• ••• 678",
        limit="sms-global",
    ),
    "keys.resealed": audit.SealedValuesResealed(
        columns=("one_time_codes.destination",), resealed=2, current=1
    ),
    "xero.tokens_refreshed": audit.XeroTokensRefreshed(
        grant_id="xgr_1",
        org_id="org_1",
        outcome="refreshed",
        allowed_by="session:0a1b2c3d (user usr_1)",
        version=2,
    ),
    "xero.needs_reconnect": audit.XeroGrantNeedsReconnect(
        grant_id="xgr_1", org_id="org_1", tenants=("t-1",), notified=("usr_1",)
    ),
    "xero.connected": audit.XeroConnected(
        grant_id="xgr_1",
        org_id="org_1",
        connected_by="usr_1",
        tenants=("t-1", "t-2"),
        countries=("AU", "NZ"),
        replaced=(),
    ),
    "xero.disconnected": audit.XeroDisconnected(
        grant_id="xgr_1", org_id="org_1", tenants=("t-1",), deleted_at_xero=("conn-1",)
    ),
    "xero.connection_removed": audit.XeroConnectionRemoved(
        connection_id="conn-1", org_id="org_1", grant_id="xgr_1", tenant_id="t-1"
    ),
    "service_key.created": audit.ServiceKeyCreated(key_id="svk_1", org_id="org_1", name="sync"),
    "service_key.revoked": audit.ServiceKeyRevoked(key_id="svk_1", org_id="org_1"),
    "xero.webhook_abandoned": audit.WebhookAbandoned(
        event_id="xwh_1",
        tenant_id="t-1",
        event_category="INVOICE",
        event_type="UPDATE",
        resource_id="r-1",
        attempts=25,
        error="the app answered 500",
    ),
    "password.reset_requested": audit.PasswordResetRequested(account_id="usr_1", typed="abc"),
    "password.reset_throttled": audit.PasswordResetThrottled(typed="abc"),
    "password.reset_sent": audit.PasswordResetSent(
        user_id="usr_1", org_id="org_1", to="a•••@h.example"
    ),
    "password.reset_send_failed": audit.PasswordResetSendFailed(
        user_id="usr_1", org_id="org_1", to="a•••@h.example", reason="refused"
    ),
    "password.reset_refused": audit.PasswordResetRefused(user_id=None, reason="unknown"),
    "password.reset": audit.PasswordReset(user_id="usr_1", org_id="org_1", sessions_ended=2),
    "password.changed": audit.PasswordChanged(user_id="usr_1", org_id="org_1", sessions_ended=1),
    "password.change_failed": audit.PasswordChangeFailed(
        user_id="usr_1", org_id="org_1", reason="wrong-password"
    ),
    "reminder.sent": audit.ReminderSent(
        user_id="usr_1",
        org_id="org_1",
        reminder="reminder",
        policy_id="p",
        point="7d-2026-12-31",
        attempts=1,
        to="m***@h.example",
    ),
    "reminder.failed": audit.ReminderFailed(
        user_id="usr_1",
        org_id="org_1",
        reminder="summary",
        policy_id="",
        point="2026-W49",
        attempts=2,
        retry_at=1_800_003_600.0,
        reason="The mail server refused the address.",
    ),
}


def _kinds_defined() -> set[str]:
    """Every concrete event class in gateway.audit, found by walking the subclasses."""
    found: set[str] = set()
    todo: list[type[Event]] = [Event]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        in_package = cls.__module__.startswith(f"{audit.__name__}.")
        if in_package and "kind" in vars(cls):
            found.add(cls.kind)
    return found


def test_every_kind_is_listed_once_with_an_example() -> None:
    assert set(EVENTS) == _kinds_defined()
    assert set(SAMPLES) == set(EVENTS)
    assert all(type(event) is EVENTS[kind] for kind, event in SAMPLES.items())


def _rebuilt(stored: AuditEvent) -> Event:
    """The typed event read back from its stored row (this test's own reading of the format)."""
    cls = EVENTS[stored.kind]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == cls.subject_field:
            values[f.name] = stored.subject
        elif f.name == "org_id":
            values[f.name] = stored.org_id
        else:
            value = stored.detail[f.name]
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
async def test_each_kind_round_trips_through_the_store_and_the_export(
    store: Store, kind: str
) -> None:
    event = SAMPLES[kind]
    await store.audit.record(event, at=1_798_000_000.0, actor="cli", client_addr="203.0.113.7")
    [stored] = await store.audit.list()
    row = event_row(event)
    assert (stored.kind, stored.subject, stored.org_id, stored.detail) == (
        kind,
        row.subject,
        row.org_id,
        row.detail,
    )
    assert _rebuilt(stored) == event
    document = event_document(stored, when=str)
    assert (document["kind"], document["detail"]) == (kind, row.detail)


def test_the_stored_format_is_unchanged() -> None:
    # Columns and detail keys as the trail held them before kinds were types.
    assert event_row(SAMPLES["user.added"]) == audit.AuditRow(
        kind="user.added",
        subject="usr_1",
        org_id="org_1",
        detail={"email": "a@h.example", "role": "member"},
    )
    assert event_row(SAMPLES["org.added"]).subject == "org_1"
    assert event_row(SAMPLES["login.failed"]).detail == {"reason": "unknown-user", "typed": "abc"}
    assert event_row(SAMPLES["mfa.prompt_dismissed"]).detail == {
        "policies": ["au-ato-2fa"],
        "dismissals": 2,
        "cap": None,
    }
    assert event_row(SAMPLES["logout"]).detail == {}


# What an audit kind looks like ("user.added"); other ``kind=`` keywords (a policy field's
# kind, say) are not audit kinds.
_KIND_SHAPE = re.compile(r"[a-z_]+\.[a-z_.]+")


def _literal_kinds(path: Path) -> list[str]:
    """String literals in a module that spell an audit kind, or are passed as ``kind=``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and node.value in EVENTS:
            found.append(f"line {node.lineno}: {node.value!r}")
        elif (
            isinstance(node, ast.keyword)
            and node.arg == "kind"
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and _KIND_SHAPE.fullmatch(node.value.value)
        ):
            found.append(f"line {node.lineno}: kind={node.value.value!r}")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if EVENTS_PACKAGE not in p.parents)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_but_the_events_module_spells_a_kind(path: Path) -> None:
    assert _literal_kinds(path) == []


def test_the_literal_check_sees_a_spelled_kind(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        'record(kind="thing.happened")\nKINDS = {"add": "user.added"}\nField(kind="names")\n'
    )
    assert _literal_kinds(module) == ["line 1: kind='thing.happened'", "line 2: 'user.added'"]

"""Gateway admins: adding and disabling them, checking password and TOTP together, sessions.

Admins are not app users: their accounts, sessions and cookie are their own, and an admin
always gives both factors (no grace, no remembered device). Admin pages are few and rare,
so a session is read from the store on every request: a disabled admin, or a session ended
by another process, is refused at once everywhere.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway.accounts.passwords import Passwords
from gateway.clock import Clock
from gateway.crypto.sealing import Sealer
from gateway.errors import NotFoundError
from gateway.mfa import totp
from gateway.signin.sessions import SessionLimits, hash_session_id
from gateway.store import Admin, AdminSession, Store
from gateway.store.admins import admin_totp_aad
from gateway.store.records import new_id


@dataclass(frozen=True, kw_only=True)
class NewAdmin:
    """An admin just added, with what their authenticator app needs (shown this once)."""

    admin: Admin
    uri: str  # otpauth://… for a QR code or a link
    key: str  # the seed in groups of four, for typing in by hand


def seal_seed(sealer: Sealer, admin_id: str, secret: str) -> bytes:
    return sealer.seal(secret.encode("ascii"), admin_totp_aad(admin_id))


def open_seed(sealer: Sealer, admin: Admin) -> str:
    return sealer.open(admin.totp_sealed, admin_totp_aad(admin.id)).decode("ascii")


async def add_admin(
    store: Store,
    sealer: Sealer,
    *,
    email: str,
    name: str,
    password_hash: str,
    issuer: str,
    now: float,
) -> NewAdmin:
    """Store a new admin with a fresh authenticator seed; ConflictError for a taken email."""
    admin_id = new_id("adm")
    secret = totp.new_secret()
    admin = await store.admins.add(
        Admin(
            id=admin_id,
            email=email,
            name=name,
            password_hash=password_hash,
            totp_sealed=seal_seed(sealer, admin_id, secret),
            last_step=None,
            created_at=now,
            disabled_at=None,
        )
    )
    uri = totp.provisioning_uri(secret, account=email, issuer=f"{issuer} admin")
    return NewAdmin(admin=admin, uri=uri, key=totp.grouped_key(secret))


def session_end_reason(session: AdminSession, limits: SessionLimits, now: float) -> str | None:
    """Why an admin session is over at ``now`` ('ended', 'expired', 'idle'), or None."""
    if session.ended_at is not None:
        return "ended"
    if now >= session.expires_at:
        return "expired"
    if now - session.last_seen_at >= limits.idle:
        return "idle"
    return None


@dataclass(frozen=True, kw_only=True)
class Checked:
    """The outcome of a sign-in attempt: the admin when both factors were right; otherwise
    why not (for the log and audit trail only) and the admin named, if any."""

    admin: Admin | None
    reason: str
    named: str | None


class AdminSignIn:
    """Checks admins' credentials and keeps their sessions."""

    def __init__(
        self,
        store: Store,
        passwords: Passwords,
        sealer: Sealer,
        limits: SessionLimits,
        clock: Clock,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._sealer = sealer
        self._limits = limits
        self._clock = clock

    async def check(self, email: str, password: str, code: str) -> Checked:
        """Password and TOTP code together; a code is accepted once (its step must be later
        than the last accepted one, settled by a conditional UPDATE)."""
        admin = await self._store.admins.find_by_email(email)
        if admin is None or admin.disabled:
            await self._passwords.verify_unknown(password)
            reason = "unknown-admin" if admin is None else "disabled"
            return Checked(admin=None, reason=reason, named=admin.id if admin else None)
        if not await self._passwords.verify(admin.password_hash, password):
            return Checked(admin=None, reason="bad-password", named=admin.id)
        step = totp.matched_step(open_seed(self._sealer, admin), code, now=self._clock())
        if step is None:
            return Checked(admin=None, reason="bad-code", named=admin.id)
        if not totp.is_fresh(step, admin.last_step) or not await self._store.admins.accept_step(
            admin.id, step
        ):
            return Checked(admin=None, reason="replayed-code", named=admin.id)
        return Checked(admin=admin, reason="ok", named=admin.id)

    async def start(self, admin: Admin, *, client_addr: str | None) -> tuple[str, AdminSession]:
        """A new session (a new id at every sign-in); returns the raw id for the cookie."""
        now = self._clock()
        raw_id = secrets.token_urlsafe(32)
        session = AdminSession(
            id_hash=hash_session_id(raw_id),
            admin_id=admin.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._limits.absolute,
            csrf_secret=secrets.token_urlsafe(32),
            client_addr=client_addr,
            ended_at=None,
        )
        await self._store.admins.add_session(session)
        return raw_id, session

    async def lookup(self, raw_id: str) -> tuple[AdminSession, Admin] | None:
        """The open session behind a cookie value and its admin, touched as used now; None
        if unknown, over (it is ended then) or its admin is disabled."""
        found = await self._store.admins.session(hash_session_id(raw_id))
        if found is None:
            return None
        session, admin = found
        now = self._clock()
        reason = session_end_reason(session, self._limits, now)
        if admin.disabled and reason is None:
            reason = "disabled"
        if reason is not None:
            if reason != "ended":
                await self._store.admins.end_session(session.id_hash, now)
            return None
        await self._store.admins.touch_session(session.id_hash, now)
        return session, admin

    async def end(self, id_hash: str) -> None:
        await self._store.admins.end_session(id_hash, self._clock())


async def disable_admin(store: Store, email: str, now: float) -> Admin:
    """Disable the admin with this email and end their sessions; NotFoundError if none."""
    admin = await store.admins.find_by_email(email)
    if admin is None:
        raise NotFoundError(f"no admin has the email {email!r}")
    await store.admins.disable(admin.id, now)
    return admin

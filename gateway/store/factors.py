"""Second factors: a user's enrolled factors, recovery codes, remembered devices and the
enrolment under way, each change one statement or one transaction.

Secrets (an authenticator's seed, a phone number) are stored sealed, as base64 text of
the sealed blob; the associated data binds each to its user and row, so a blob copied into
another row does not open. The sealed columns are registered with gateway.store.sealed, so
rotate-key re-seals them under a new key. Races are settled by conditional writes: the last
accepted TOTP step only moves forward, a recovery code is spent only while unused, an
enrolment is finished only once, and a user has at most one factor per role.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.audit import Event
from gateway.errors import ConflictError, NotFoundError
from gateway.store.audit import record_change
from gateway.store.changes import note_change
from gateway.store.database import Database, Row, in_list
from gateway.store.records import AuditEntry
from gateway.store.revocations import revoke
from gateway.store.sealed import SealedColumn, register_sealed_column, sealed_bytes, sealed_text

FACTOR_KINDS = ("totp", "sms", "email")
FACTOR_ROLES = ("primary", "backup")
PRIMARY_KINDS = ("totp", "sms")


def factor_aad(user_id: str, factor_id: str) -> bytes:
    """What a factor's sealed secret is bound to: its user and its row."""
    return f"mfa-factor\x00{user_id}\x00{factor_id}".encode()


def pending_totp_aad(user_id: str) -> bytes:
    """What the seed of an enrolment under way is bound to: its user."""
    return f"mfa-enrolment-totp\x00{user_id}".encode()


def pending_phone_aad(user_id: str) -> bytes:
    """What the proved primary phone of an enrolment under way is bound to: its user."""
    return f"mfa-enrolment-phone\x00{user_id}".encode()


def pending_backup_aad(user_id: str) -> bytes:
    """What the verified backup destination of an enrolment under way is bound to."""
    return f"mfa-enrolment-backup\x00{user_id}".encode()


# This module's sealed columns, registered for re-sealing under a new key (rotate-key).
SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    register_sealed_column(
        SealedColumn(
            table="mfa_factors",
            id_column="id",
            column="secret",
            aad=lambda row: factor_aad(row["user_id"], row["id"]),
        )
    ),
    register_sealed_column(
        SealedColumn(
            table="mfa_enrolments",
            id_column="user_id",
            column="totp_secret",
            aad=lambda row: pending_totp_aad(row["user_id"]),
        )
    ),
    register_sealed_column(
        SealedColumn(
            table="mfa_enrolments",
            id_column="user_id",
            column="backup_secret",
            aad=lambda row: pending_backup_aad(row["user_id"]),
        )
    ),
    register_sealed_column(
        SealedColumn(
            table="mfa_enrolments",
            id_column="user_id",
            column="phone_secret",
            aad=lambda row: pending_phone_aad(row["user_id"]),
        )
    ),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Factor:
    """An enrolled second factor; ``sealed`` opens with ``factor_aad(user_id, id)``."""

    id: str
    user_id: str
    kind: str
    role: str
    sealed: bytes
    last_step: int | None
    created_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class NewFactor:
    """A factor about to be stored at the end of an enrolment."""

    id: str
    kind: str
    role: str
    sealed: bytes
    last_step: int | None

    def __post_init__(self) -> None:
        if self.kind not in FACTOR_KINDS or self.role not in FACTOR_ROLES:
            raise ValueError(f"unknown factor kind or role: {self.kind!r}, {self.role!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingEnrolment:
    """An enrolment under way: its step started at ``started_at`` (which also names it) and
    runs out at ``expires_at``; ``primary_kind`` is the method being set up (``totp`` or
    ``sms``). For an app, the seed is sealed with ``pending_totp_aad(user_id)`` and
    ``totp_step`` is the step of the code that confirmed it (None until then); for a phone,
    ``phone_sealed`` (sealed with ``pending_phone_aad(user_id)``) is the number the code sent
    to it proved (None until then). ``backup_kind`` and ``backup_sealed`` (sealed with
    ``pending_backup_aad(user_id)``) the backup method a code proved (None until then)."""

    user_id: str
    started_at: float
    expires_at: float
    totp_sealed: bytes | None
    totp_step: int | None
    backup_kind: str | None = None
    backup_sealed: bytes | None = None
    primary_kind: str = "totp"
    phone_sealed: bytes | None = None

    @property
    def totp_confirmed(self) -> bool:
        return self.totp_step is not None

    @property
    def confirmed(self) -> bool:
        """The primary method is proved: the app by a code, or the phone by a sent code."""
        if self.primary_kind == "sms":
            return self.phone_sealed is not None
        return self.totp_step is not None


@dataclass(frozen=True, kw_only=True, slots=True)
class RememberedDevice:
    """A browser that may skip the second factor until ``expires_at``; only the hash of its
    token is stored."""

    token_hash: str
    user_id: str
    created_at: float
    expires_at: float
    last_used_at: float | None
    label: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ResetCounts:
    """What a reset removed: factors, recovery codes (used or not), remembered devices,
    enrolments under way and open sessions."""

    factors: int
    recovery_codes: int
    devices: int
    enrolments: int
    sessions: int


# What a reset deletes of a user's 2FA, by table.
_RESET_DELETES = {
    table: f"DELETE FROM {table} WHERE user_id = :user_id"  # noqa: S608 - fixed names
    for table in ("mfa_factors", "mfa_recovery_codes", "mfa_devices", "mfa_enrolments")
}


class ResetUserGone(NotFoundError):
    """The user to reset is unknown or disabled; nothing was changed."""


class FinishError(ConflictError):
    """The enrolment could not be finished: it is not there, not confirmed, ran out, or the
    user already has a factor in that role. Nothing was saved."""


def _device(row: Row) -> RememberedDevice:
    return RememberedDevice(
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        last_used_at=None if row["last_used_at"] is None else float(row["last_used_at"]),
        label=row["label"],
    )


def _factor(row: Row) -> Factor:
    return Factor(
        id=row["id"],
        user_id=row["user_id"],
        kind=row["kind"],
        role=row["role"],
        sealed=sealed_bytes(row["secret"]),
        last_step=None if row["last_step"] is None else int(row["last_step"]),
        created_at=float(row["created_at"]),
    )


class FactorRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # Enrolled factors

    async def factors(self, user_id: str) -> list[Factor]:
        """The user's factors, primary first."""
        rows = await self._db.fetch_all(
            "SELECT id, user_id, kind, role, secret, last_step, created_at FROM mfa_factors"
            " WHERE user_id = :user_id ORDER BY role DESC",
            {"user_id": user_id},
        )
        return [_factor(row) for row in rows]

    async def kinds(self, user_id: str) -> list[tuple[str, str]]:
        """(kind, role) of each of the user's factors: what a decision needs, no secrets."""
        rows = await self._db.fetch_all(
            "SELECT kind, role FROM mfa_factors WHERE user_id = :user_id", {"user_id": user_id}
        )
        return [(row["kind"], row["role"]) for row in rows]

    async def enrolled_user_ids(self) -> set[str]:
        """Every user with a primary factor."""
        rows = await self._db.fetch_all("SELECT user_id FROM mfa_factors WHERE role = 'primary'")
        return {row["user_id"] for row in rows}

    async def enrolled_at(self, user_ids: Sequence[str] | None = None) -> dict[str, float]:
        """When each user with a primary factor first confirmed one (a new primary factor
        keeps the date): every such user, or those of ``user_ids``, in one statement."""
        sql = "SELECT user_id, min(created_at) AS at FROM mfa_factors WHERE role = 'primary'"
        if user_ids is None:
            rows = await self._db.fetch_all(f"{sql} GROUP BY user_id")
        else:
            wanted = list(dict.fromkeys(user_ids))
            if not wanted:
                return {}
            placeholders, params = in_list(wanted)
            rows = await self._db.fetch_all(
                f"{sql} AND user_id IN ({placeholders}) GROUP BY user_id", params
            )
        return {row["user_id"]: float(row["at"]) for row in rows}

    async def accept_step(self, factor_id: str, step: int) -> bool:
        """Record ``step`` as the factor's last accepted TOTP step if it is later than the one
        recorded; False (nothing changed) if it is not: a replay, or a racing submission that
        won. One conditional UPDATE, so exactly one of two racing submissions succeeds."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE mfa_factors SET last_step = :step"
                " WHERE id = :id AND (last_step IS NULL OR last_step < :step)",
                {"id": factor_id, "step": step},
            )
        return changed == 1

    # Enrolment under way

    async def pending(self, user_id: str) -> PendingEnrolment | None:
        row = await self._db.fetch_one(
            "SELECT user_id, started_at, expires_at, totp_secret, totp_step, backup_kind,"
            " backup_secret, primary_kind, phone_secret FROM mfa_enrolments"
            " WHERE user_id = :user_id",
            {"user_id": user_id},
        )
        if row is None:
            return None
        return PendingEnrolment(
            user_id=row["user_id"],
            started_at=float(row["started_at"]),
            expires_at=float(row["expires_at"]),
            totp_sealed=None if row["totp_secret"] is None else sealed_bytes(row["totp_secret"]),
            totp_step=None if row["totp_step"] is None else int(row["totp_step"]),
            backup_kind=row["backup_kind"],
            backup_sealed=(
                None if row["backup_secret"] is None else sealed_bytes(row["backup_secret"])
            ),
            primary_kind=row["primary_kind"],
            phone_sealed=(
                None if row["phone_secret"] is None else sealed_bytes(row["phone_secret"])
            ),
        )

    async def start(
        self,
        user_id: str,
        *,
        now: float,
        expires_at: float,
        totp_sealed: bytes | None,
        primary_kind: str = "totp",
    ) -> PendingEnrolment:
        """Start (or start over) the user's enrolment: with a new authenticator seed, or for a
        phone (``primary_kind="sms"``, no seed: the number comes once a code proves it);
        whatever was under way before is replaced."""
        if primary_kind not in PRIMARY_KINDS or (totp_sealed is None) != (primary_kind == "sms"):
            raise ValueError(f"an enrolment of {primary_kind!r} with that seed cannot start")
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO mfa_enrolments (user_id, started_at, expires_at, totp_secret,"
                " totp_step, primary_kind) VALUES (:user_id, :now, :expires_at, :secret, NULL,"
                " :kind) ON CONFLICT (user_id) DO UPDATE SET started_at = excluded.started_at,"
                " expires_at = excluded.expires_at, totp_secret = excluded.totp_secret,"
                " totp_step = NULL, backup_kind = NULL, backup_secret = NULL,"
                " primary_kind = excluded.primary_kind, phone_secret = NULL",
                {
                    "user_id": user_id,
                    "now": now,
                    "expires_at": expires_at,
                    "secret": None if totp_sealed is None else sealed_text(totp_sealed),
                    "kind": primary_kind,
                },
            )
        return PendingEnrolment(
            user_id=user_id,
            started_at=now,
            expires_at=expires_at,
            totp_sealed=totp_sealed,
            totp_step=None,
            primary_kind=primary_kind,
        )

    async def confirm_phone(
        self, user_id: str, *, started_at: float, now: float, sealed: bytes
    ) -> bool:
        """Keep the primary phone a code just proved (sealed with ``pending_phone_aad``) with
        the phone enrolment begun at ``started_at``; False if it was restarted, ran out, is
        not for a phone, or was confirmed already."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE mfa_enrolments SET phone_secret = :secret WHERE user_id = :user_id"
                " AND started_at = :started_at AND expires_at > :now AND primary_kind = 'sms'"
                " AND phone_secret IS NULL",
                {
                    "user_id": user_id,
                    "started_at": started_at,
                    "now": now,
                    "secret": sealed_text(sealed),
                },
            )
        return changed == 1

    async def confirm_totp(self, user_id: str, *, started_at: float, step: int, now: float) -> bool:
        """Mark the enrolment begun at ``started_at`` as confirmed by a code of ``step``; False
        if it was restarted, ran out, is not for an app, or was confirmed already."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE mfa_enrolments SET totp_step = :step WHERE user_id = :user_id"
                " AND started_at = :started_at AND expires_at > :now AND totp_step IS NULL"
                " AND primary_kind = 'totp'",
                {"user_id": user_id, "started_at": started_at, "step": step, "now": now},
            )
        return changed == 1

    async def set_backup(
        self, user_id: str, *, started_at: float, now: float, kind: str, sealed: bytes
    ) -> bool:
        """Keep the backup method a code just proved with the confirmed enrolment begun at
        ``started_at`` (replacing one proved before); False if that enrolment was restarted,
        ran out or is not confirmed. Nothing is enrolled until ``finish``."""
        if kind not in FACTOR_KINDS:
            raise ValueError(f"unknown backup kind: {kind!r}")
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE mfa_enrolments SET backup_kind = :kind, backup_secret = :secret"
                " WHERE user_id = :user_id AND started_at = :started_at AND expires_at > :now"
                # Confirmed: the app by a code of its step, the phone by the code sent to it.
                " AND (totp_step IS NOT NULL OR phone_secret IS NOT NULL)",
                {
                    "user_id": user_id,
                    "started_at": started_at,
                    "now": now,
                    "kind": kind,
                    "secret": sealed_text(sealed),
                },
            )
        return changed == 1

    async def discard(self, user_id: str) -> None:
        """Forget the user's enrolment under way (nothing enrolled changes)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM mfa_enrolments WHERE user_id = :user_id", {"user_id": user_id}
            )

    async def purge_enrolments(self, *, before: float) -> int:
        """Forget enrolments under way that ran out before ``before``: they can only start
        over (nothing enrolled changes)."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM mfa_enrolments WHERE expires_at <= :before", {"before": before}
            )

    async def finish(
        self,
        user_id: str,
        *,
        started_at: float,
        now: float,
        factor: NewFactor,
        recovery_digests: Sequence[str],
        entry: AuditEntry,
        event: Event,
        backup: NewFactor | None = None,
    ) -> None:
        """Save the enrolment begun at ``started_at``, in one transaction: the factor (and the
        ``backup`` factor, if there is one), a new
        set of recovery codes (replacing any old set), its audit event, an ``enrolment`` entry
        in the user-state feed, and the end of the enrolment under way. FinishError, with
        nothing saved, if that enrolment is gone, unconfirmed or out of time, or the user
        already has a factor in that role."""
        async with self._db.transaction() as tx:
            taken = await tx.execute(
                "DELETE FROM mfa_enrolments WHERE user_id = :user_id AND started_at = :started_at"
                " AND (totp_step IS NOT NULL OR phone_secret IS NOT NULL) AND expires_at > :now",
                {"user_id": user_id, "started_at": started_at, "now": now},
            )
            if taken != 1:
                raise FinishError("the enrolment is not ready to finish, or ran out of time")
            for new in (factor,) if backup is None else (factor, backup):
                try:
                    await tx.execute(
                        "INSERT INTO mfa_factors (id, user_id, kind, role, secret, last_step,"
                        " created_at)"
                        " VALUES (:id, :user_id, :kind, :role, :secret, :last_step, :now)",
                        {
                            "id": new.id,
                            "user_id": user_id,
                            "kind": new.kind,
                            "role": new.role,
                            "secret": sealed_text(new.sealed),
                            "last_step": new.last_step,
                            "now": now,
                        },
                    )
                except ConflictError as exc:
                    raise FinishError(f"the user already has a {new.role} factor") from exc
            await tx.execute(
                "DELETE FROM mfa_recovery_codes WHERE user_id = :user_id", {"user_id": user_id}
            )
            await tx.execute_many(
                "INSERT INTO mfa_recovery_codes (user_id, digest, created_at, used_at)"
                " VALUES (:user_id, :digest, :now, NULL)",
                [{"user_id": user_id, "digest": d, "now": now} for d in recovery_digests],
            )
            await record_change(tx, entry, event, at=now)
            # Every process's decision cache learns of the new factor from the feed.
            await note_change(tx, now, kind="enrolment", user_id=user_id)

    async def reset(
        self,
        user_id: str,
        *,
        now: float,
        entry: AuditEntry,
        event: Callable[[ResetCounts], Event],
    ) -> ResetCounts:
        """Reset the user's 2FA, in one transaction: their factors, recovery codes, remembered
        devices and enrolment under way are deleted and their open sessions ended; the
        revocation feed ends those sessions in every process, the user-state feed makes
        every decision cache read their (empty) factors again, and ``event(counts)`` is
        audited. ResetUserGone (nothing changed) if the user is unknown or disabled."""
        params = {"user_id": user_id}
        async with self._db.transaction() as tx:
            row = await tx.fetch_one("SELECT disabled FROM users WHERE id = :user_id", params)
            if row is None or row["disabled"]:
                raise ResetUserGone(f"no enabled user has id {user_id!r}")
            deleted = {
                table: await tx.execute(statement, params)
                for table, statement in _RESET_DELETES.items()
            }
            ended = await tx.execute(
                "UPDATE sessions SET ended_at = :now WHERE user_id = :user_id AND ended_at IS NULL",
                {**params, "now": now},
            )
            counts = ResetCounts(
                factors=deleted["mfa_factors"],
                recovery_codes=deleted["mfa_recovery_codes"],
                devices=deleted["mfa_devices"],
                enrolments=deleted["mfa_enrolments"],
                sessions=ended,
            )
            await revoke(tx, now, user_id=user_id)
            await note_change(tx, now, kind="enrolment", user_id=user_id)
            await record_change(tx, entry, event(counts), at=now)
        return counts

    # Recovery codes

    async def unused_recovery_digests(self, user_id: str) -> list[str]:
        rows = await self._db.fetch_all(
            "SELECT digest FROM mfa_recovery_codes WHERE user_id = :user_id AND used_at IS NULL",
            {"user_id": user_id},
        )
        return [row["digest"] for row in rows]

    async def spend_recovery(self, user_id: str, digest: str, now: float) -> bool:
        """Mark one of the user's codes used; False if it was used already (or is not
        theirs). One conditional UPDATE, so a code is spent once however many race."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE mfa_recovery_codes SET used_at = :now"
                " WHERE user_id = :user_id AND digest = :digest AND used_at IS NULL",
                {"user_id": user_id, "digest": digest, "now": now},
            )
        return changed == 1

    # Remembered devices

    async def remember(self, device: RememberedDevice) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO mfa_devices (token_hash, user_id, created_at, expires_at,"
                " last_used_at, label) VALUES (:token_hash, :user_id, :created_at,"
                " :expires_at, :last_used_at, :label)",
                {
                    "token_hash": device.token_hash,
                    "user_id": device.user_id,
                    "created_at": device.created_at,
                    "expires_at": device.expires_at,
                    "last_used_at": device.last_used_at,
                    "label": device.label,
                },
            )

    async def device(self, token_hash: str) -> RememberedDevice | None:
        row = await self._db.fetch_one(
            "SELECT token_hash, user_id, created_at, expires_at, last_used_at, label"
            " FROM mfa_devices WHERE token_hash = :token_hash",
            {"token_hash": token_hash},
        )
        return None if row is None else _device(row)

    async def user_devices(self, user_id: str) -> list[RememberedDevice]:
        """The user's remembered devices, the newest first."""
        rows = await self._db.fetch_all(
            "SELECT token_hash, user_id, created_at, expires_at, last_used_at, label"
            " FROM mfa_devices WHERE user_id = :user_id ORDER BY created_at DESC, token_hash",
            {"user_id": user_id},
        )
        return [_device(row) for row in rows]

    async def touch_device(self, token_hash: str, now: float) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE mfa_devices SET last_used_at = :now WHERE token_hash = :token_hash",
                {"token_hash": token_hash, "now": now},
            )

    async def purge_devices(self, now: float) -> int:
        """Forget devices whose window is over."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM mfa_devices WHERE expires_at <= :now", {"now": now}
            )

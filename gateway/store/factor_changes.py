"""An enrolled user's own changes to their second factors: a new primary or backup factor, a new
set of recovery codes, forgotten remembered devices. Each is one transaction with its audit
event and, where a decision could read it, an entry in the user-state feed; a change that
finds nothing to change writes nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.audit import Event
from gateway.errors import ConflictError
from gateway.store.audit import record_change
from gateway.store.changes import note_change
from gateway.store.database import Database
from gateway.store.factors import NewFactor
from gateway.store.records import AuditEntry
from gateway.store.revocations import revoke
from gateway.store.sealed import sealed_text


class ChangeRefusedError(ConflictError):
    """The change could not be made: the user has no primary factor (their 2FA was reset
    meanwhile), or the confirmed step it finishes is gone or ran out. Nothing was saved."""


class FactorChangeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def replace_factor(
        self,
        user_id: str,
        factor: NewFactor,
        *,
        now: float,
        entry: AuditEntry,
        event: Event,
        started_at: float | None = None,
    ) -> None:
        """Make ``factor`` the user's factor in its role, in place of the one there (if any);
        with ``started_at``, the confirmed step under way begun then is taken too (it must be
        there and in time). ChangeRefusedError, nothing saved, if the user has no primary
        factor or that step is gone."""
        params = {"user_id": user_id, "now": now}
        async with self._db.transaction() as tx:
            enrolled = await tx.fetch_one(
                "SELECT 1 AS found FROM mfa_factors WHERE user_id = :user_id AND role = 'primary'",
                {"user_id": user_id},
            )
            if enrolled is None:
                raise ChangeRefusedError("no second factor is set up for this user")
            if started_at is not None:
                taken = await tx.execute(
                    "DELETE FROM mfa_enrolments WHERE user_id = :user_id"
                    " AND started_at = :started_at AND expires_at > :now"
                    " AND (totp_step IS NOT NULL OR phone_secret IS NOT NULL)",
                    {**params, "started_at": started_at},
                )
                if taken != 1:
                    raise ChangeRefusedError("the confirmed step is gone or ran out")
            # A new primary factor keeps the old one's created_at: the user has been enrolled
            # since then (the console's enrolment chart and user page read it so).
            previous = await tx.fetch_one(
                "SELECT min(created_at) AS at FROM mfa_factors"
                " WHERE user_id = :user_id AND role = :role",
                {"user_id": user_id, "role": factor.role},
            )
            since = now
            if factor.role == "primary" and previous is not None and previous["at"] is not None:
                since = float(previous["at"])
            await tx.execute(
                "DELETE FROM mfa_factors WHERE user_id = :user_id AND role = :role",
                {"user_id": user_id, "role": factor.role},
            )
            await tx.execute(
                "INSERT INTO mfa_factors (id, user_id, kind, role, secret, last_step, created_at)"
                " VALUES (:id, :user_id, :kind, :role, :secret, :last_step, :since)",
                {
                    **params,
                    "since": since,
                    "id": factor.id,
                    "kind": factor.kind,
                    "role": factor.role,
                    "secret": sealed_text(factor.sealed),
                    "last_step": factor.last_step,
                },
            )
            await record_change(tx, entry, event, at=now)
            await note_change(tx, now, kind="enrolment", user_id=user_id)

    async def replace_recovery_codes(
        self,
        user_id: str,
        digests: Sequence[str],
        *,
        now: float,
        entry: AuditEntry,
        event: Callable[[int], Event],
    ) -> int:
        """Replace the user's recovery codes by ``digests``, audited as ``event(unused)`` (how
        many unused codes died); returns that number. ChangeRefusedError, nothing saved, if
        the user has no primary factor."""
        params = {"user_id": user_id}
        async with self._db.transaction() as tx:
            enrolled = await tx.fetch_one(
                "SELECT 1 AS found FROM mfa_factors WHERE user_id = :user_id AND role = 'primary'",
                params,
            )
            if enrolled is None:
                raise ChangeRefusedError("no second factor is set up for this user")
            unused = await tx.execute(
                "DELETE FROM mfa_recovery_codes WHERE user_id = :user_id AND used_at IS NULL",
                params,
            )
            await tx.execute("DELETE FROM mfa_recovery_codes WHERE user_id = :user_id", params)
            await tx.execute_many(
                "INSERT INTO mfa_recovery_codes (user_id, digest, created_at, used_at)"
                " VALUES (:user_id, :digest, :now, NULL)",
                [{"user_id": user_id, "digest": d, "now": now} for d in digests],
            )
            await record_change(tx, entry, event(unused), at=now)
        return unused

    async def forget_devices(
        self,
        user_id: str,
        token_hashes: Sequence[str] | None,
        *,
        keep_session: str,
        now: float,
        entry: AuditEntry,
        event: Callable[[int], Event],
    ) -> int:
        """Forget the user's remembered devices with these token hashes (every one of theirs
        when None), audited as ``event(count)``; returns how many went (0: none, nothing
        audited). Only the user's own devices are ever touched.

        The user's sessions that a remembered device let past the second factor end too (in
        every process, through the revocation feed), but for ``keep_session`` (the hash of
        the session asking): a session does not record which device let it in, so a lost
        device's session cannot be told from another device's, and each asks again."""
        async with self._db.transaction() as tx:
            if token_hashes is None:
                forgotten = await tx.execute(
                    "DELETE FROM mfa_devices WHERE user_id = :user_id", {"user_id": user_id}
                )
            else:
                forgotten = 0
                for token_hash in token_hashes:
                    forgotten += await tx.execute(
                        "DELETE FROM mfa_devices WHERE user_id = :user_id"
                        " AND token_hash = :token_hash",
                        {"user_id": user_id, "token_hash": token_hash},
                    )
            if forgotten:
                rows = await tx.fetch_all(
                    "SELECT id_hash FROM sessions WHERE user_id = :user_id"
                    " AND ended_at IS NULL AND mfa_method = 'device' AND id_hash <> :keep",
                    {"user_id": user_id, "keep": keep_session},
                )
                for row in rows:
                    await tx.execute(
                        "UPDATE sessions SET ended_at = :now WHERE id_hash = :id_hash",
                        {"now": now, "id_hash": row["id_hash"]},
                    )
                    await revoke(tx, now, session_hash=row["id_hash"])
                await record_change(tx, entry, event(forgotten), at=now)
        return forgotten

"""Xero grants and connections: one consent's sealed token set, versioned, and its tenants.

A *grant* is what one consent produced: one token set (access and refresh token, sealed at
rest), one ``authEventId``. A grant connects one or more tenants; each is a *connection*
with the id Xero gave it. Tokens are stored sealed (base64 text of the sealer's blob); the
associated data binds each to its grant and token-set version, so a blob copied into another
row, or an older version's blob written back, does not open. Both sealed columns are
registered with gateway.store.sealed, so rotate-key re-seals them.

Races are settled by conditional writes, portable to PostgreSQL as they are: a new token set
is stored only where the version is still the one it was refreshed from (exactly one of two
writers wins, whichever process they run in), and the refresh lease is taken only while no
one else holds it. A commit is durable when it returns (synchronous=FULL), so a token set
is stored before anyone uses it.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.store.database import Database, Row
from gateway.store.sealed import SealedColumn, register_sealed_column, sealed_bytes, sealed_text

GRANT_STATUSES = ("active", "needs_reconnect", "disconnected")
CONNECTION_STATUSES = ("active", "needs_reconnect", "disconnected", "removed_at_xero")


def access_token_aad(grant_id: str, version: int) -> bytes:
    """What a grant's sealed access token is bound to: its grant and token-set version."""
    return f"xero-access-token\x00{grant_id}\x00{version}".encode()


def refresh_token_aad(grant_id: str, version: int) -> bytes:
    """What a grant's sealed refresh token is bound to: its grant and token-set version."""
    return f"xero-refresh-token\x00{grant_id}\x00{version}".encode()


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    register_sealed_column(
        SealedColumn(
            table="xero_grants",
            id_column="id",
            column="access_token",
            aad=lambda row: access_token_aad(row["id"], int(row["version"])),
        )
    ),
    register_sealed_column(
        SealedColumn(
            table="xero_grants",
            id_column="id",
            column="refresh_token",
            aad=lambda row: refresh_token_aad(row["id"], int(row["version"])),
        )
    ),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class SealedTokens:
    """A token set as stored: both tokens sealed for (grant, version), the rest in the clear."""

    access_sealed: bytes
    refresh_sealed: bytes
    expires_at: float
    scopes: tuple[str, ...]

    def __repr__(self) -> str:
        return f"SealedTokens(expires_at={self.expires_at!r}, scopes={self.scopes!r})"


@dataclass(frozen=True, kw_only=True, slots=True)
class XeroGrant:
    """One consent's token set and its bookkeeping (times are Unix seconds).

    ``refresh_token_issued_at`` starts the refresh token's 60-day idle clock;
    ``last_refresh_at`` is the last refresh (None until the first); ``verified_use_at`` the
    last time an MFA-verified member used it; ``lease_owner``/``lease_until`` the refresh lease.
    """

    id: str
    org_id: str
    auth_event_id: str | None
    connected_by: str
    created_at: float
    status: str
    status_changed_at: float
    version: int
    tokens: SealedTokens
    refresh_token_issued_at: float
    last_refresh_at: float | None
    verified_use_at: float | None
    lease_owner: str | None
    lease_until: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class XeroConnection:
    """One tenant a grant connects; ``id`` is Xero's connection id."""

    id: str
    grant_id: str
    org_id: str
    tenant_id: str
    tenant_type: str
    tenant_name: str
    created_at: float
    status: str
    status_changed_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class NewConnection:
    """A tenant of a new grant, as Xero's ``/connections`` names it."""

    id: str
    tenant_id: str
    tenant_type: str
    tenant_name: str


_GRANT = (
    "SELECT id, org_id, auth_event_id, connected_by, created_at, status, status_changed_at,"
    " version, access_token, refresh_token, access_expires_at, scopes, refresh_token_issued_at,"
    " last_refresh_at, verified_use_at, lease_owner, lease_until FROM xero_grants"
)
_CONNECTION = (
    "SELECT id, grant_id, org_id, tenant_id, tenant_type, tenant_name, created_at, status,"
    " status_changed_at FROM xero_connections"
)
_MARK = (
    "UPDATE xero_grants SET status = :status, status_changed_at = :now,"
    " lease_owner = NULL, lease_until = NULL WHERE id = :id"
)
_MARK_NEEDS_RECONNECT = _MARK + " AND status = 'active'"
_MARK_DISCONNECTED = _MARK + " AND status IN ('active', 'needs_reconnect')"


def _grant(row: Row) -> XeroGrant:
    return XeroGrant(
        id=row["id"],
        org_id=row["org_id"],
        auth_event_id=row["auth_event_id"],
        connected_by=row["connected_by"],
        created_at=row["created_at"],
        status=row["status"],
        status_changed_at=row["status_changed_at"],
        version=int(row["version"]),
        tokens=SealedTokens(
            access_sealed=sealed_bytes(row["access_token"]),
            refresh_sealed=sealed_bytes(row["refresh_token"]),
            expires_at=row["access_expires_at"],
            scopes=tuple(row["scopes"].split()),
        ),
        refresh_token_issued_at=row["refresh_token_issued_at"],
        last_refresh_at=row["last_refresh_at"],
        verified_use_at=row["verified_use_at"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
    )


def _connection(row: Row) -> XeroConnection:
    return XeroConnection(
        id=row["id"],
        grant_id=row["grant_id"],
        org_id=row["org_id"],
        tenant_id=row["tenant_id"],
        tenant_type=row["tenant_type"],
        tenant_name=row["tenant_name"],
        created_at=row["created_at"],
        status=row["status"],
        status_changed_at=row["status_changed_at"],
    )


def _token_params(tokens: SealedTokens) -> dict[str, object]:
    return {
        "access": sealed_text(tokens.access_sealed),
        "refresh": sealed_text(tokens.refresh_sealed),
        "expires_at": tokens.expires_at,
        "scopes": " ".join(tokens.scopes),
    }


class XeroGrantRepository:
    """Grants and their connections; every change one conditional statement or transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        *,
        grant_id: str,
        org_id: str,
        auth_event_id: str | None,
        connected_by: str,
        tokens: SealedTokens,
        connections: Sequence[NewConnection],
        now: float,
        take_over: bool = False,
    ) -> XeroGrant:
        """Store a new grant (token-set version 1, sealed for it by the caller) and its
        connections in one transaction; ConflictError if the grant or a connection id exists.

        With ``take_over``, a connection id the organisation has already (Xero keeps a
        tenant's connection id when the same user consents again) moves to the new grant and
        is active again; an earlier grant left with no live connection is marked
        disconnected. A connection id of another organisation is still a ConflictError.

        The caller makes ``grant_id`` first (``new_id("xgr")``), since the sealed tokens are
        bound to it.
        """
        if not connections:
            raise StoreError("a Xero grant connects at least one tenant")
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO xero_grants (id, org_id, auth_event_id, connected_by, created_at,"
                " status, status_changed_at, version, access_token, refresh_token,"
                " access_expires_at, scopes, refresh_token_issued_at)"
                " VALUES (:id, :org_id, :auth_event_id, :by, :now, 'active', :now, 1, :access,"
                " :refresh, :expires_at, :scopes, :now)",
                {
                    "id": grant_id,
                    "org_id": org_id,
                    "auth_event_id": auth_event_id,
                    "by": connected_by,
                    "now": now,
                    **_token_params(tokens),
                },
            )
            earlier: set[str] = set()
            for c in connections:
                if take_over:
                    held = await tx.fetch_one(
                        "SELECT grant_id, org_id FROM xero_connections WHERE id = :id",
                        {"id": c.id},
                    )
                    if held is not None and held["org_id"] == org_id:
                        earlier.add(held["grant_id"])
                        await tx.execute(
                            "UPDATE xero_connections SET grant_id = :grant_id,"
                            " tenant_type = :tenant_type, tenant_name = :tenant_name,"
                            " status = 'active', status_changed_at = :now WHERE id = :id",
                            {
                                "id": c.id,
                                "grant_id": grant_id,
                                "tenant_type": c.tenant_type,
                                "tenant_name": c.tenant_name,
                                "now": now,
                            },
                        )
                        continue
                await tx.execute(
                    "INSERT INTO xero_connections (id, grant_id, org_id, tenant_id, tenant_type,"
                    " tenant_name, created_at, status, status_changed_at) VALUES (:id, :grant_id,"
                    " :org_id, :tenant_id, :tenant_type, :tenant_name, :now, 'active', :now)",
                    {
                        "id": c.id,
                        "grant_id": grant_id,
                        "org_id": org_id,
                        "tenant_id": c.tenant_id,
                        "tenant_type": c.tenant_type,
                        "tenant_name": c.tenant_name,
                        "now": now,
                    },
                )
            for old_id in sorted(earlier - {grant_id}):
                left = await tx.fetch_one(
                    "SELECT count(*) AS n FROM xero_connections WHERE grant_id = :id"
                    " AND status IN ('active', 'needs_reconnect')",
                    {"id": old_id},
                )
                if left is not None and int(left["n"]) == 0:
                    await tx.execute(
                        _MARK_DISCONNECTED, {"id": old_id, "status": "disconnected", "now": now}
                    )
            row = await tx.fetch_one(f"{_GRANT} WHERE id = :id", {"id": grant_id})
        if row is None:  # pragma: no cover - inserted just above
            raise ConflictError(f"Xero grant {grant_id!r} vanished as it was stored")
        return _grant(row)

    async def get(self, grant_id: str) -> XeroGrant | None:
        """The grant as committed now, or None."""
        row = await self._db.fetch_one(f"{_GRANT} WHERE id = :id", {"id": grant_id})
        return _grant(row) if row is not None else None

    async def require(self, grant_id: str) -> XeroGrant:
        """The grant, or NotFoundError."""
        grant = await self.get(grant_id)
        if grant is None:
            raise NotFoundError(f"no Xero grant has id {grant_id!r}")
        return grant

    async def for_org(self, org_id: str) -> builtins.list[XeroGrant]:
        """The organisation's grants, oldest first, whatever their status."""
        rows = await self._db.fetch_all(
            f"{_GRANT} WHERE org_id = :org_id ORDER BY created_at, id", {"org_id": org_id}
        )
        return [_grant(row) for row in rows]

    async def active(self) -> builtins.list[XeroGrant]:
        """Every active grant, oldest first (for the facts schedule)."""
        rows = await self._db.fetch_all(f"{_GRANT} WHERE status = 'active' ORDER BY created_at, id")
        return [_grant(row) for row in rows]

    async def add_connection(self, grant_id: str, connection: NewConnection, *, now: float) -> bool:
        """Add a tenant Xero lists for an active grant that the store did not know; False if
        the connection id is known already or the grant is no longer active."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "INSERT INTO xero_connections (id, grant_id, org_id, tenant_id, tenant_type,"
                " tenant_name, created_at, status, status_changed_at)"
                " SELECT :id, id, org_id, :tenant_id, :tenant_type, :tenant_name, :now,"
                " 'active', :now FROM xero_grants WHERE id = :grant_id AND status = 'active'"
                " ON CONFLICT (id) DO NOTHING",
                {
                    "id": connection.id,
                    "grant_id": grant_id,
                    "tenant_id": connection.tenant_id,
                    "tenant_type": connection.tenant_type,
                    "tenant_name": connection.tenant_name,
                    "now": now,
                },
            )
        return changed == 1

    async def connections(self, grant_id: str) -> builtins.list[XeroConnection]:
        """The tenants a grant connects, in the order they were stored."""
        rows = await self._db.fetch_all(
            f"{_CONNECTION} WHERE grant_id = :grant_id ORDER BY created_at, id",
            {"grant_id": grant_id},
        )
        return [_connection(row) for row in rows]

    async def connections_for_org(self, org_id: str) -> builtins.list[XeroConnection]:
        """The organisation's connections, oldest first, whatever their status."""
        rows = await self._db.fetch_all(
            f"{_CONNECTION} WHERE org_id = :org_id ORDER BY created_at, id", {"org_id": org_id}
        )
        return [_connection(row) for row in rows]

    async def connection_for_tenant(self, org_id: str, tenant_id: str) -> XeroConnection | None:
        """The newest active connection of the organisation to this tenant, or None."""
        row = await self._db.fetch_one(
            f"{_CONNECTION} WHERE org_id = :org_id AND tenant_id = :tenant_id"
            " AND status = 'active' ORDER BY created_at DESC, id DESC LIMIT 1",
            {"org_id": org_id, "tenant_id": tenant_id},
        )
        return _connection(row) if row is not None else None

    async def swap_tokens(
        self, grant_id: str, *, expected_version: int, tokens: SealedTokens, now: float
    ) -> bool:
        """Store a refreshed token set (sealed for ``expected_version + 1``) where the grant is
        still active at ``expected_version``, and let go of the lease; True if this call won.

        Of two writers refreshed from one version, exactly one wins, in any process.
        """
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE xero_grants SET version = version + 1, access_token = :access,"
                " refresh_token = :refresh, access_expires_at = :expires_at, scopes = :scopes,"
                " refresh_token_issued_at = :now, last_refresh_at = :now,"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE id = :id AND version = :expected AND status = 'active'",
                {"id": grant_id, "expected": expected_version, "now": now, **_token_params(tokens)},
            )
        return changed == 1

    async def claim_lease(
        self, grant_id: str, *, owner: str, version: int, now: float, until: float
    ) -> bool:
        """Take the refresh lease of an active grant still at ``version``, unless another
        owner holds it past ``now``; True if ``owner`` holds it until ``until`` now."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE xero_grants SET lease_owner = :owner, lease_until = :until"
                " WHERE id = :id AND version = :version AND status = 'active'"
                " AND (lease_owner IS NULL OR lease_owner = :owner OR lease_until <= :now)",
                {"id": grant_id, "owner": owner, "version": version, "now": now, "until": until},
            )
        return changed == 1

    async def release_lease(self, grant_id: str, *, owner: str) -> None:
        """Let go of the refresh lease if ``owner`` still holds it."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE xero_grants SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = :id AND lease_owner = :owner",
                {"id": grant_id, "owner": owner},
            )

    async def mark(
        self, grant_id: str, status: str, *, now: float, version: int | None = None
    ) -> bool:
        """Move a grant to ``needs_reconnect`` (from active) or ``disconnected`` (from active or
        needs_reconnect), its connections with it, and drop its lease; True if it moved. With
        ``version``, only while the grant is still at that token-set version."""
        if status == "needs_reconnect":
            sql = _MARK_NEEDS_RECONNECT
        elif status == "disconnected":
            sql = _MARK_DISCONNECTED
        else:
            raise StoreError(f"a grant is marked needs_reconnect or disconnected, not {status!r}")
        if version is not None:
            # A second statement rather than ":version IS NULL", which PostgreSQL cannot type.
            sql += " AND version = :version"
        params = {"id": grant_id, "status": status, "now": now, "version": version}
        async with self._db.transaction() as tx:
            changed = await tx.execute(sql, params)
            if changed:
                await tx.execute(
                    "UPDATE xero_connections SET status = :status, status_changed_at = :now"
                    " WHERE grant_id = :id AND status IN ('active', 'needs_reconnect')",
                    params,
                )
        return changed == 1

    async def mark_removed_at_xero(self, connection_id: str, *, now: float) -> bool:
        """Note that Xero no longer lists this connection; True if it was active."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE xero_connections SET status = 'removed_at_xero', status_changed_at = :now"
                " WHERE id = :id AND status = 'active'",
                {"id": connection_id, "now": now},
            )
        return changed == 1

    async def record_verified_use(self, grant_id: str, now: float) -> None:
        """Note that an MFA-verified member used the grant at ``now`` (never moves back)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE xero_grants SET verified_use_at = :now WHERE id = :id"
                " AND (verified_use_at IS NULL OR verified_use_at < :now)",
                {"id": grant_id, "now": now},
            )

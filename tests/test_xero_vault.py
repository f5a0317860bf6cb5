"""The token vault on a real SQLite file: custody, single flight in and across processes,
invalid_grant, outages, key rotation and a crash between Xero's answer and the commit.

Xero's token endpoint is the process edge: ``ScriptedXero`` stands in for it here, counting
calls, rotating refresh tokens as Xero does, and able to refuse, fail or hold an answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.crypto.keys import Keys
from gateway.delivery.smtp import SmtpSender
from gateway.ops.metrics import Metrics
from gateway.store import Store
from gateway.store.sealed import reseal_all
from gateway.store.xero import NewConnection, XeroGrant
from gateway.xero.custody import (
    ConnectionGone,
    ForeignGrant,
    MfaRequired,
    NeedsReconnect,
    ServiceKeyAuthority,
    UnverifiedSession,
    VerifiedSession,
)
from gateway.xero.tokens import InvalidGrant, TokenSet, XeroUnavailable
from gateway.xero.vault import Vault
from tests.conftest import SECRET, START
from tests.stand_ins import Mailbox

ROOT = Path(__file__).resolve().parent.parent
GRACE = 30 * 60  # Xero forgives a retry of the previous refresh token this long


@dataclass
class ScriptedXero:
    """Xero's token endpoint, scripted: rotating refresh tokens, one spend each."""

    current: str = "refresh-0"
    previous: str | None = None
    previous_spent_at: float = 0.0
    mode: str = "ok"  # ok, invalid_grant, down
    gate: asyncio.Event | None = None  # when set, each call waits for it
    calls: int = 0
    seen: list[str] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    issued: int = 0
    revoked: list[str] = field(default_factory=list)

    def first(self, now: float) -> TokenSet:
        return TokenSet(
            access_token="access-0-secret",
            refresh_token=self.current,
            expires_at=now + 1800,
            scopes=("offline_access", "accounting.transactions"),
        )

    async def exchange_code(self, *, code: str, code_verifier: str, now: float) -> TokenSet:
        raise AssertionError("the vault never exchanges codes")

    async def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        self.calls += 1
        self.seen.append(refresh_token)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.mode == "down":
            raise XeroUnavailable("Xero answered 503")
        if self.mode == "invalid_grant":
            raise InvalidGrant("Xero answered invalid_grant")
        retry = refresh_token == self.previous and now - self.previous_spent_at < GRACE
        if refresh_token != self.current and not retry:
            raise InvalidGrant("Xero answered invalid_grant")
        self.issued += 1
        fresh = TokenSet(
            access_token=f"access-{self.issued}-secret",
            refresh_token=f"refresh-{self.issued}",
            expires_at=now + 1800,
            scopes=("offline_access", "accounting.transactions"),
        )
        self.previous, self.previous_spent_at = refresh_token, now
        self.current = fresh.refresh_token
        return fresh

    async def revoke(self, refresh_token: str) -> None:
        if self.mode == "down":
            raise XeroUnavailable("Xero answered 503")
        self.revoked.append(refresh_token)


@dataclass
class World:
    store: Store
    xero: ScriptedXero
    clock: ManualClock
    vault: Vault
    grant: XeroGrant
    org_id: str
    principal: str
    window: list[timedelta | None]

    def verified(self) -> VerifiedSession:
        return VerifiedSession(user_id=self.principal, org_id=self.org_id, session_ref="s1")

    def unverified(self) -> UnverifiedSession:
        return UnverifiedSession(user_id=self.principal, org_id=self.org_id, session_ref="s2")

    def service(self) -> ServiceKeyAuthority:
        return ServiceKeyAuthority(key_id="svk_1", org_id=self.org_id)

    def expire(self) -> None:
        """Move the clock to 30 s before the access token runs out: a refresh is due."""
        self.clock.set(self.grant.tokens.expires_at - 30)


def make_vault(
    store: Store,
    xero: ScriptedXero,
    clock: ManualClock,
    *,
    window: list[timedelta | None] | None = None,
    email: SmtpSender | None = None,
    metrics: Metrics | None = None,
    max_wait_seconds: float = 30.0,
    lease_seconds: float = 60.0,
) -> Vault:
    """A vault over ``store``; ``window[0]`` is the service refresh window (changeable)."""
    windows = window if window is not None else [timedelta(hours=8)]
    return Vault(
        store=store,
        endpoint=xero,
        sealer=Keys.derive(SECRET).at_rest,
        clock=clock,
        service_refresh_window=lambda _org: windows[0],
        email=email,
        metrics=metrics,
        poll_seconds=0.001,
        max_wait_seconds=max_wait_seconds,
        lease_seconds=lease_seconds,
    )


async def seed(store: Store, xero: ScriptedXero, clock: ManualClock, vault: Vault) -> World:
    org = await store.organisations.add(name="Harbour", now=START)
    principal = await store.users.add(
        org_id=org.id,
        email="pat@harbour.example",
        display_name="Pat",
        role="principal",
        password_hash="x",
        now=START,
    )
    await store.users.add(
        org_id=org.id,
        email="mo@harbour.example",
        display_name="Mo",
        role="member",
        password_hash="x",
        now=START,
    )
    grant = await vault.connect(
        org_id=org.id,
        connected_by=principal.id,
        tokens=xero.first(START),
        connections=[
            NewConnection(
                id="conn-1", tenant_id="t-au", tenant_type="ORGANISATION", tenant_name="Harbour AU"
            ),
            NewConnection(
                id="conn-2", tenant_id="t-nz", tenant_type="ORGANISATION", tenant_name="Harbour NZ"
            ),
        ],
        now=START,
    )
    return World(
        store=store,
        xero=xero,
        clock=clock,
        vault=vault,
        grant=grant,
        org_id=org.id,
        principal=principal.id,
        window=[timedelta(hours=8)],
    )


@pytest.fixture
async def world(store: Store) -> World:
    clock = ManualClock(START)
    xero = ScriptedXero()
    window: list[timedelta | None] = [timedelta(hours=8)]
    vault = make_vault(store, xero, clock, window=window, metrics=Metrics())
    w = await seed(store, xero, clock, vault)
    w.window = window
    return w


async def test_a_valid_access_token_is_handed_to_every_caller_without_a_refresh(
    world: World,
) -> None:
    for authority in (world.verified(), world.unverified(), world.service()):
        token = await world.vault.access_token(world.grant.id, authority, START + 60)
        assert token == "access-0-secret"
    assert world.xero.calls == 0


async def test_a_thousand_concurrent_callers_on_an_expired_token_cause_one_refresh(
    world: World,
) -> None:
    writes: list[float] = []
    record = world.store.xero.record_verified_use

    async def counted(grant_id: str, now: float) -> None:
        writes.append(now)
        await record(grant_id, now)

    world.store.xero.record_verified_use = counted  # type: ignore[method-assign]
    world.expire()
    now = world.clock()
    tokens = await asyncio.gather(
        *(world.vault.access_token(world.grant.id, world.verified(), now) for _ in range(1000))
    )
    assert world.xero.calls == 1
    assert writes == [now]  # the verified use is written once, not by every caller
    assert set(tokens) == {"access-1-secret"}
    stored = await world.store.xero.require(world.grant.id)
    assert stored.version == 2
    assert world.vault.open(stored).refresh_token == "refresh-1"
    assert stored.lease_owner is None
    assert stored.last_refresh_at == now


async def test_two_vaults_on_two_connections_to_one_file_refresh_once(
    world: World, tmp_path: Path
) -> None:
    other_store = await Store.open(tmp_path / "gateway.sqlite3")
    try:
        other = make_vault(other_store, world.xero, world.clock)
        refused = asyncio.Event()
        claim = other_store.xero.claim_lease

        async def watched_claim(grant_id: str, **kwargs: float | int | str) -> bool:
            won = await claim(grant_id, **kwargs)  # type: ignore[arg-type]
            if not won:
                refused.set()
            return won

        other_store.xero.claim_lease = watched_claim  # type: ignore[method-assign]
        world.xero.gate = asyncio.Event()
        world.expire()
        now = world.clock()
        first = asyncio.create_task(world.vault.access_token(world.grant.id, world.verified(), now))
        await world.xero.entered.wait()  # the first process holds the lease and asked Xero
        second = asyncio.create_task(other.access_token(world.grant.id, world.verified(), now))
        await refused.wait()  # the second process found the lease held
        world.xero.gate.set()
        assert await first == await second == "access-1-secret"
        assert world.xero.calls == 1
    finally:
        await other_store.close()


async def test_of_two_compare_and_swaps_on_one_version_exactly_one_wins(
    world: World, tmp_path: Path
) -> None:
    other_store = await Store.open(tmp_path / "gateway.sqlite3")
    try:
        vault = world.vault
        mine = TokenSet(
            access_token="a-mine", refresh_token="r-mine", expires_at=START + 9e3, scopes=()
        )
        theirs = TokenSet(
            access_token="a-theirs", refresh_token="r-theirs", expires_at=START + 9e3, scopes=()
        )
        results = await asyncio.gather(
            world.store.xero.swap_tokens(
                world.grant.id,
                expected_version=1,
                tokens=vault.seal(world.grant.id, 2, mine),
                now=START,
            ),
            other_store.xero.swap_tokens(
                world.grant.id,
                expected_version=1,
                tokens=vault.seal(world.grant.id, 2, theirs),
                now=START,
            ),
        )
        assert sorted(results) == [False, True]
        stored = await world.store.xero.require(world.grant.id)
        winner = mine if results[0] else theirs
        assert stored.version == 2
        assert vault.open(stored).refresh_token == winner.refresh_token
        # The loser, trying again from the old version, still changes nothing.
        loser = theirs if results[0] else mine
        assert not await world.store.xero.swap_tokens(
            world.grant.id,
            expected_version=1,
            tokens=vault.seal(world.grant.id, 2, loser),
            now=START,
        )
        assert (
            vault.open(await world.store.xero.require(world.grant.id)).refresh_token
            == winner.refresh_token
        )
    finally:
        await other_store.close()


async def test_the_refresh_lease_is_held_until_it_runs_out_or_its_owner_lets_go(
    world: World,
) -> None:
    repo, gid = world.store.xero, world.grant.id
    assert await repo.claim_lease(gid, owner="a", version=1, now=START, until=START + 60)
    assert not await repo.claim_lease(gid, owner="b", version=1, now=START + 59, until=START + 119)
    await repo.release_lease(gid, owner="b")  # not b's to release
    assert not await repo.claim_lease(gid, owner="b", version=1, now=START + 59, until=START + 119)
    assert await repo.claim_lease(gid, owner="b", version=1, now=START + 60, until=START + 120)
    await repo.release_lease(gid, owner="b")
    assert not await repo.claim_lease(gid, owner="a", version=2, now=START + 61, until=START + 121)
    assert await repo.claim_lease(gid, owner="a", version=1, now=START + 61, until=START + 121)


async def test_invalid_grant_marks_the_grant_tells_the_principal_and_audits(
    store: Store, mailbox: Mailbox
) -> None:
    clock = ManualClock(START)
    xero = ScriptedXero(mode="invalid_grant")
    email = SmtpSender(
        host="127.0.0.1", port=mailbox.port, sender="gw@gateway.example", starttls=False
    )
    metrics = Metrics()
    w = await seed(store, xero, clock, make_vault(store, xero, clock, email=email, metrics=metrics))
    w.expire()
    now = clock()
    results = await asyncio.gather(
        *(w.vault.access_token(w.grant.id, w.verified(), now) for _ in range(20)),
        return_exceptions=True,
    )
    assert all(isinstance(r, NeedsReconnect) for r in results)
    assert xero.calls == 1
    grant = await store.xero.require(w.grant.id)
    assert grant.status == "needs_reconnect"
    assert {c.status for c in await store.xero.connections(w.grant.id)} == {"needs_reconnect"}
    # The principal, and only the principal, is told.
    assert len(mailbox.received) == 1
    assert b"pat@harbour.example" in mailbox.received[0]
    assert b"Harbour AU" in mailbox.received[0]
    kinds = [(e.kind, e.detail.get("outcome")) for e in await store.audit.list(kind=None)]
    assert ("xero.tokens_refreshed", "invalid_grant") in kinds
    reconnect = await store.audit.list(kind="xero.needs_reconnect")
    assert reconnect[0].detail["notified"] == [w.principal]
    assert metrics.xero_refreshes.labels(outcome="invalid_grant")._value.get() == 1
    # Later callers are told at once; Xero is not asked again.
    with pytest.raises(NeedsReconnect):
        await w.vault.access_token(w.grant.id, w.verified(), now + 10)
    assert xero.calls == 1


async def test_an_outage_keeps_the_tokens_and_frees_the_lease(world: World) -> None:
    world.xero.mode = "down"
    world.expire()
    now = world.clock()
    with pytest.raises(XeroUnavailable):
        await world.vault.access_token(world.grant.id, world.verified(), now)
    stored = await world.store.xero.require(world.grant.id)
    assert (stored.version, stored.status, stored.lease_owner) == (1, "active", None)
    assert world.vault.open(stored).refresh_token == "refresh-0"
    outcomes = [
        e.detail["outcome"] for e in await world.store.audit.list(kind="xero.tokens_refreshed")
    ]
    assert outcomes == ["unavailable"]
    # Once Xero is back, the kept refresh token works.
    world.xero.mode = "ok"
    assert (
        await world.vault.access_token(world.grant.id, world.verified(), now + 5)
        == "access-1-secret"
    )


async def test_xero_not_answering_within_the_lease_keeps_the_tokens(world: World) -> None:
    vault = make_vault(world.store, world.xero, world.clock, lease_seconds=0.02)
    world.xero.gate = asyncio.Event()  # never set: Xero hangs
    world.expire()
    with pytest.raises(XeroUnavailable, match="in time"):
        await vault.access_token(world.grant.id, world.verified(), world.clock())
    stored = await world.store.xero.require(world.grant.id)
    assert (stored.version, stored.status, stored.lease_owner) == (1, "active", None)


async def test_invalid_grant_after_another_process_refreshed_is_no_reason_to_reconnect(
    world: World,
) -> None:
    world.xero.gate = asyncio.Event()
    world.xero.mode = "invalid_grant"
    world.expire()
    now = world.clock()
    call = asyncio.create_task(world.vault.access_token(world.grant.id, world.verified(), now))
    await world.xero.entered.wait()
    # Meanwhile (its lease having run out) another process refreshed and stored version 2.
    theirs = TokenSet(
        access_token="access-other", refresh_token="r-other", expires_at=now + 1800, scopes=()
    )
    sealed = world.vault.seal(world.grant.id, 2, theirs)
    assert await world.store.xero.swap_tokens(
        world.grant.id, expected_version=1, tokens=sealed, now=now
    )
    world.xero.gate.set()
    assert await call == "access-other"
    assert (await world.store.xero.require(world.grant.id)).status == "active"
    outcomes = [
        e.detail["outcome"] for e in await world.store.audit.list(kind="xero.tokens_refreshed")
    ]
    assert outcomes == ["lost_race"]


async def test_an_unverified_session_uses_a_valid_token_but_may_not_refresh(world: World) -> None:
    assert (
        await world.vault.access_token(world.grant.id, world.unverified(), START)
        == "access-0-secret"
    )
    world.expire()
    with pytest.raises(MfaRequired, match="second-factor"):
        await world.vault.access_token(world.grant.id, world.unverified(), world.clock())
    assert world.xero.calls == 0


async def test_a_service_key_refreshes_only_within_the_window_after_a_verified_use(
    world: World,
) -> None:
    gid = world.grant.id
    world.expire()
    with pytest.raises(MfaRequired, match="service refresh window"):  # nobody verified used it
        await world.vault.access_token(gid, world.service(), world.clock())
    used_at = START + 100
    await world.vault.access_token(gid, world.verified(), used_at)  # valid: no refresh
    assert world.xero.calls == 0
    assert (await world.store.xero.require(gid)).verified_use_at == used_at
    world.expire()  # 29.5 minutes later: within the 8-hour window
    await world.vault.access_token(gid, world.service(), world.clock())
    assert world.xero.calls == 1
    events = await world.store.audit.list(kind="xero.tokens_refreshed")
    assert events[-1].detail["allowed_by"] == "service-key:svk_1"
    # Past the window, the next expiry is refused.
    later = used_at + timedelta(hours=8).total_seconds() + 1
    stored = await world.store.xero.require(gid)
    assert stored.tokens.expires_at - 60 < later
    with pytest.raises(MfaRequired):
        await world.vault.access_token(gid, world.service(), later)
    # No policy applying: no window at all.
    world.window[0] = None
    with pytest.raises(MfaRequired):
        await world.vault.access_token(gid, world.service(), stored.tokens.expires_at - 30)
    assert world.xero.calls == 1


async def test_another_organisation_may_not_use_the_grant(world: World) -> None:
    stranger = ServiceKeyAuthority(key_id="svk_9", org_id="org_other")
    with pytest.raises(ForeignGrant):
        await world.vault.access_token(world.grant.id, stranger, START)


async def test_rotate_key_reseals_the_token_columns(world: World) -> None:
    new_keys = Keys.derive("n" * 48, [SECRET])
    counts = {c.column: c for c in await reseal_all(world.store.db, new_keys.at_rest)}
    assert counts["xero_grants.access_token"].resealed == 1
    assert counts["xero_grants.refresh_token"].resealed == 1
    only_new = Vault(
        store=world.store,
        endpoint=world.xero,
        sealer=Keys.derive("n" * 48).at_rest,
        clock=world.clock,
        service_refresh_window=lambda _org: None,
    )
    tokens = only_new.open(await world.store.xero.require(world.grant.id))
    assert (tokens.access_token, tokens.refresh_token) == ("access-0-secret", "refresh-0")


async def test_tokens_never_reach_the_log_or_the_audit_trail(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.expire()
    await world.vault.access_token(world.grant.id, world.verified(), world.clock())
    world.xero.mode = "down"
    world.clock.set((await world.store.xero.require(world.grant.id)).tokens.expires_at)
    with pytest.raises(XeroUnavailable):
        await world.vault.access_token(world.grant.id, world.verified(), world.clock())
    world.xero.mode = "invalid_grant"
    with pytest.raises(NeedsReconnect):
        await world.vault.access_token(world.grant.id, world.verified(), world.clock() + 1)
    trail = repr([(e.kind, e.actor, e.subject, e.detail) for e in await world.store.audit.list()])
    raw = await world.store.db.fetch_all("SELECT access_token, refresh_token FROM xero_grants")
    for secret in ("access-0-secret", "access-1-secret", "refresh-0", "refresh-1"):
        assert secret not in caplog.text
        assert secret not in trail
        assert secret not in repr(raw)  # sealed at rest
    assert "access-1-secret" not in repr(await world.store.xero.require(world.grant.id))


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from gateway.clock import ManualClock
    from gateway.crypto.keys import Keys
    from gateway.store import Store
    from gateway.xero.custody import VerifiedSession
    from gateway.xero.tokens import TokenSet
    from gateway.xero.vault import Vault

    path, secret, grant_id, org_id, user_id, now = sys.argv[1:7]
    now = float(now)

    class AnswersThenHangs:
        async def refresh(self, refresh_token, *, now):
            # Xero has spent the token and issued a new set; the answer is in hand.
            print("answered", refresh_token, flush=True)
            await asyncio.Event().wait()  # killed here, before the vault stores it

    async def main():
        store = await Store.open(path)
        vault = Vault(
            store=store, endpoint=AnswersThenHangs(), sealer=Keys.derive(secret).at_rest,
            clock=ManualClock(now), service_refresh_window=lambda _org: None,
        )
        who = VerifiedSession(user_id=user_id, org_id=org_id, session_ref="child")
        await vault.access_token(grant_id, who, now)

    asyncio.run(main())
    """
)


async def test_a_crash_between_xeros_answer_and_the_commit_recovers_with_the_old_refresh_token(
    world: World, tmp_path: Path
) -> None:
    world.expire()
    now = world.clock()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(tmp_path / "gateway.sqlite3"),
        SECRET,
        world.grant.id,
        world.org_id,
        world.principal,
        str(now),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    line = await child.stdout.readline()
    assert line == b"answered refresh-0\n"
    # What Xero did for the child: spent refresh-0 and issued a set the child never stored.
    world.xero.previous, world.xero.previous_spent_at = "refresh-0", now
    world.xero.current, world.xero.issued = "refresh-lost", 1
    child.send_signal(signal.SIGKILL)
    await child.wait()
    stored = await world.store.xero.require(world.grant.id)
    assert stored.version == 1
    assert stored.lease_owner is not None  # the dead child's lease
    # A restarted gateway: once the dead process's lease runs out, it spends the previous
    # refresh token again, within Xero's grace, and stores what comes back.
    restarted = make_vault(world.store, world.xero, world.clock)
    with pytest.raises(XeroUnavailable):  # the lease is still the dead process's
        await make_vault(world.store, world.xero, world.clock, max_wait_seconds=0).access_token(
            world.grant.id, world.verified(), now
        )
    assert world.xero.calls == 0
    later = stored.lease_until + 1 if stored.lease_until is not None else now
    world.clock.set(later)
    token = await restarted.access_token(world.grant.id, world.verified(), later)
    assert world.xero.seen == ["refresh-0"]
    assert token == "access-2-secret"
    after = await world.store.xero.require(world.grant.id)
    assert (after.version, after.lease_owner) == (2, None)


async def test_disconnect_revokes_at_xero_then_marks_the_grant(world: World) -> None:
    world.xero.mode = "down"
    with pytest.raises(XeroUnavailable):
        await world.vault.disconnect(world.grant.id, now=START + 1)
    assert (await world.store.xero.require(world.grant.id)).status == "active"
    world.xero.mode = "ok"
    assert await world.vault.disconnect(world.grant.id, now=START + 2)
    assert world.xero.revoked == ["refresh-0"]
    assert not await world.vault.disconnect(world.grant.id, now=START + 3)
    statuses = {c.status for c in await world.store.xero.connections(world.grant.id)}
    assert statuses == {"disconnected"}
    with pytest.raises(ConnectionGone):
        await world.vault.access_token(world.grant.id, world.verified(), START + 4)


async def test_a_grant_waiting_for_a_reconnect_is_disconnected_without_asking_xero(
    world: World,
) -> None:
    assert await world.store.xero.mark(world.grant.id, "needs_reconnect", now=START + 1)
    assert await world.vault.disconnect(world.grant.id, now=START + 2)
    assert world.xero.revoked == []
    assert (await world.store.xero.require(world.grant.id)).status == "disconnected"

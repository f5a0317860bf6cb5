"""The connect flow's authorization state: PKCE (RFC 7636) and single-use states bound to the
session that began the flow, on a real SQLite file with an injected clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import string
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.crypto.keys import Keys
from gateway.store import Store, sealed_columns
from gateway.store.sealed import reseal_all
from gateway.store.xero_authorizations import VERIFIER_COLUMN
from gateway.xero.authorization import (
    CONNECTIONS_PAGE,
    STATE_LIFETIME,
    AuthorizationStates,
    StateRefused,
)
from gateway.xero.pkce import is_verifier, new_verifier, s256_challenge
from tests.conftest import SECRET, START

OLD_SECRET = "the-previous-secret-key-long-enough-9876543210"
SESSION = "a" * 64
OTHER_SESSION = "b" * 64


def test_pkce_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_verifiers_are_well_formed_fresh_and_their_challenges_check_out() -> None:
    unreserved = set(string.ascii_letters + string.digits + "-._~")
    verifiers = {new_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        assert set(verifier) <= unreserved
        digest = hashlib.sha256(verifier.encode()).digest()
        assert s256_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a" * 42, False), ("a" * 43, True), ("a" * 128, True), ("a" * 129, False),
     ("a" * 42 + "+", False), ("a" * 42 + "~", True), ("é" * 43, False)],
)  # fmt: skip
def test_verifier_form(value: str, ok: bool) -> None:
    assert is_verifier(value) is ok
    if not ok:
        with pytest.raises(ValueError, match="43-128"):
            s256_challenge(value)


async def _user(store: Store) -> tuple[str, str]:
    org = await store.organisations.add(name="Harbour", now=START)
    user = await store.users.add(
        org_id=org.id, email="ava@h.example", display_name="Ava", role="principal",
        password_hash="x", now=START,
    )  # fmt: skip
    return user.id, org.id


def _states(store: Store, keys: Keys) -> AuthorizationStates:
    return AuthorizationStates(
        store.xero_authorizations, sealer=keys.at_rest, hasher=keys.xero_states
    )


async def test_a_state_completes_once_for_its_session(store: Store) -> None:
    keys = Keys.derive(SECRET)
    states = _states(store, keys)
    user_id, org_id = await _user(store)
    started = await states.begin(
        session_hash=SESSION, user_id=user_id, org_id=org_id, next_path="/books?x=1", now=START
    )
    assert started.code_challenge_method == "S256"
    assert started.expires_at == START + STATE_LIFETIME
    assert started.state not in repr(started)
    # At rest: neither the state nor the verifier in the clear.
    row = await store.db.fetch_one("SELECT * FROM xero_authorizations")
    assert row is not None
    assert started.state not in str(dict(row))

    done = await states.complete(started.state, session_hash=SESSION, now=START + 60)
    assert (done.user_id, done.org_id, done.next_path) == (user_id, org_id, "/books?x=1")
    assert s256_challenge(done.code_verifier) == started.code_challenge
    assert done.code_verifier not in str(dict(row))
    assert done.code_verifier not in repr(done)

    with pytest.raises(StateRefused) as replay:
        await states.complete(started.state, session_hash=SESSION, now=START + 61)
    assert replay.value.reason == "used"
    assert "already been completed" in str(replay.value)


async def test_forged_foreign_and_expired_states_are_refused_with_their_reason(
    store: Store,
) -> None:
    clock = ManualClock(START)
    states = _states(store, Keys.derive(SECRET))
    user_id, org_id = await _user(store)

    async def begin() -> str:
        started = await states.begin(
            session_hash=SESSION, user_id=user_id, org_id=org_id, next_path=None, now=clock()
        )
        return started.state

    async def reason(state: str, session: str = SESSION) -> str:
        with pytest.raises(StateRefused) as refused:
            await states.complete(state, session_hash=session, now=clock())
        return refused.value.reason

    assert await reason("forged-" + "x" * 40) == "unknown"
    assert await reason("") == "unknown"
    assert await reason("x" * 129) == "unknown"

    state = await begin()
    assert await reason(state, OTHER_SESSION) == "other-session"
    # The other session's attempt spends nothing: the flow's own session still completes it.
    done = await states.complete(state, session_hash=SESSION, now=clock())
    assert done.next_path == CONNECTIONS_PAGE  # no next given: back to the connections page

    state = await begin()
    clock.advance(STATE_LIFETIME - 1)
    expiring = await begin()
    clock.advance(1)
    assert await reason(state) == "expired"
    assert (await states.complete(expiring, session_hash=SESSION, now=clock())).user_id == user_id

    # The first (completed) and the expired one are past their lifetime; the fresh one stays.
    assert await states.purge(before=clock()) == 2
    assert await reason(state) == "unknown"


async def test_next_is_kept_only_when_it_stays_on_this_origin(store: Store) -> None:
    states = _states(store, Keys.derive(SECRET))
    user_id, org_id = await _user(store)
    for given in ("https://evil.example/", "//evil.example", "/_gateway/login", "/\\evil"):
        started = await states.begin(
            session_hash=SESSION, user_id=user_id, org_id=org_id, next_path=given, now=START
        )
        done = await states.complete(started.state, session_hash=SESSION, now=START)
        assert done.next_path == CONNECTIONS_PAGE, given


async def test_racing_callbacks_with_one_state_complete_it_once(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    keys = Keys.derive(SECRET)
    async with await Store.open(path) as first, await Store.open(path) as second:
        user_id, org_id = await _user(first)
        started = await _states(first, keys).begin(
            session_hash=SESSION, user_id=user_id, org_id=org_id, next_path="/", now=START
        )

        async def attempt(store: Store) -> str:
            try:
                await _states(store, keys).complete(started.state, session_hash=SESSION, now=START)
            except StateRefused as refused:
                return refused.reason
            return "completed"

        results = await asyncio.gather(*(attempt(s) for s in (first, second, first, second)))
    assert sorted(results) == ["completed", "used", "used", "used"]


async def test_states_survive_a_key_rotation_and_their_verifiers_are_resealed(
    store: Store,
) -> None:
    old = Keys.derive(OLD_SECRET)
    user_id, org_id = await _user(store)
    started = await _states(store, old).begin(
        session_hash=SESSION, user_id=user_id, org_id=org_id, next_path="/", now=START
    )
    assert VERIFIER_COLUMN in sealed_columns()
    rotated = Keys.derive(SECRET, [OLD_SECRET])
    counts = {c.column: c for c in await reseal_all(store.db, rotated.at_rest)}
    assert counts["xero_authorizations.verifier"].resealed == 1
    # Found by the old key's hash, opened with the new key's seal; the new key alone opens it.
    done = await _states(store, rotated).complete(started.state, session_hash=SESSION, now=START)
    assert s256_challenge(done.code_verifier) == started.code_challenge
    row = await store.db.fetch_one("SELECT verifier FROM xero_authorizations")
    assert row is not None
    assert Keys.derive(SECRET).at_rest.is_current(base64.b64decode(row["verifier"]))

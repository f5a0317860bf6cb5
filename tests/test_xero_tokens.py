"""The token set's own rules: when it needs a refresh, which consent it names, what it shows."""

from __future__ import annotations

import base64
import json

from gateway.xero.tokens import REFRESH_MARGIN, TokenSet, jwt_claims


def _jwt(claims: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def _set(
    access_token: str = "a",  # noqa: S107 - not a credential
    expires_at: float = 1000.0,
) -> TokenSet:
    return TokenSet(
        access_token=access_token,
        refresh_token="secret-refresh",
        expires_at=expires_at,
        scopes=("offline_access",),
    )


def test_an_access_token_needs_a_refresh_within_the_margin_of_its_expiry() -> None:
    tokens = _set(expires_at=1000.0)
    assert not tokens.needs_refresh(1000.0 - REFRESH_MARGIN - 1)
    assert tokens.needs_refresh(1000.0 - REFRESH_MARGIN)
    assert tokens.needs_refresh(2000.0)


def test_the_consent_is_read_from_the_access_tokens_claims() -> None:
    assert _set(_jwt({"authentication_event_id": "ev-1", "exp": 5})).auth_event_id == "ev-1"
    assert _set(_jwt({"exp": 5})).auth_event_id is None
    assert _set("not-a-jwt").auth_event_id is None


def test_claims_of_anything_but_a_jwt_object_are_empty() -> None:
    assert jwt_claims("a.b") == {}
    assert jwt_claims("a.!!!.c") == {}
    assert jwt_claims(_jwt(["a", "list"])) == {}
    assert jwt_claims(_jwt({"sub": "x", "n": 3})) == {"sub": "x"}


def test_a_token_set_never_shows_its_tokens() -> None:
    shown = repr(_set("secret-access"))
    assert "secret-access" not in shown
    assert "secret-refresh" not in shown

"""Xero's token and revocation endpoints over HTTP: the ``TokenEndpoint`` the vault and the
connect flow use.

aiohttp rather than xero-python here: the SDK has no authorization-code exchange, keeps the
token URLs as class attributes (no per-instance setting), has no timeouts by default and is
synchronous. Failures map to ``InvalidGrant`` (400 ``invalid_grant``), ``XeroUnavailable``
(5xx, 429, timeout, no connection, an unreadable answer) and ``XeroRejected`` (other 4xx).
No message or log line carries a token.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from gateway.config import XeroConfig
from gateway.xero.tokens import InvalidGrant, TokenSet, XeroRejected, XeroUnavailable

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 10.0  # seconds for a whole call to the token or revocation endpoint


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds when given as a number (an HTTP date is not trusted)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def token_set(body: Any, *, now: float) -> TokenSet:
    """A token response read into a ``TokenSet``; ValueError when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the token response is not a JSON object")
    access, refresh = body.get("access_token"), body.get("refresh_token")
    expires_in, scope = body.get("expires_in"), body.get("scope", "")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise ValueError("the token response lacks an access or refresh token")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        raise ValueError("the token response has no usable expires_in")
    id_token = body.get("id_token")
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        expires_at=now + float(expires_in),
        scopes=tuple(str(scope).split()) if isinstance(scope, str) else (),
        id_token=id_token if isinstance(id_token, str) else None,
    )


class IdentityClient:
    """``TokenEndpoint`` over aiohttp, with the app's credentials from ``[xero]``.

    The caller owns ``session`` (one shared client session) and closes it.
    """

    def __init__(
        self,
        config: XeroConfig,
        session: aiohttp.ClientSession,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._config = config
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def exchange_code(self, *, code: str, code_verifier: str, now: float) -> TokenSet:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._config.redirect_uri,
            "code_verifier": code_verifier,
        }
        return await self._grant("code exchange", form, now=now)

    async def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self._grant("refresh", form, now=now)

    async def revoke(self, refresh_token: str) -> None:
        await self._post("revocation", self._config.revoke_url, {"token": refresh_token})

    async def _grant(self, what: str, form: dict[str, str], *, now: float) -> TokenSet:
        body = await self._post(what, self._config.token_url, form)
        try:
            return token_set(body, now=now)
        except ValueError as exc:
            raise XeroUnavailable(f"Xero's {what} answer was unreadable: {exc}") from None

    def _auth(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """HTTP Basic with the secret; a PKCE-only app (no secret) names itself in the form."""
        if self._config.client_secret:
            basic = aiohttp.encode_basic_auth(self._config.client_id, self._config.client_secret)
            return {"Authorization": basic}, form
        return {}, {**form, "client_id": self._config.client_id}

    async def _post(self, what: str, url: str, form: dict[str, str]) -> Any:
        headers, data = self._auth(form)
        try:
            async with self._session.post(
                url, data=data, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
                wait = retry_after(response.headers.get("Retry-After"))
                text = await response.text(errors="replace")
        except TimeoutError:
            log.warning("xero %s: timed out", what)
            raise XeroUnavailable(f"Xero's {what} timed out; try again") from None
        except aiohttp.ClientError as exc:
            log.warning("xero %s: no answer (%s)", what, type(exc).__name__)
            raise XeroUnavailable(f"Xero's {what} could not be reached; try again") from None
        log.info("xero %s: %s", what, status)
        if status == 200:
            return _json(text) if text else None
        error = _oauth_error(text)
        if status == 400 and error == "invalid_grant":
            raise InvalidGrant(f"Xero refused the {what}: invalid_grant (connect Xero again)")
        if status >= 500 or status == 429:
            raise XeroUnavailable(f"Xero's {what} answered {status}; try again", retry_after=wait)
        detail = f"{status} {error}" if error else str(status)
        raise XeroRejected(f"Xero refused the {what}: {detail}", status=status)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _oauth_error(text: str) -> str | None:
    body = _json(text)
    error = body.get("error") if isinstance(body, dict) else None
    # Only a plain OAuth error code is repeated in a message, never free text from the body.
    return error if isinstance(error, str) and error.replace("_", "").isalpha() else None

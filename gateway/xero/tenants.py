"""Reading a consent's tenants from Xero: its connections, each tenant's Organisation facts,
and disconnecting one.

Through xero-python (``IdentityApi``, ``AccountingApi`` with ``base_url`` from ``[xero]
api_url``), called off the event loop. Each call builds its own ``ApiClient``: the SDK keeps
the token on an object that it rewrites on every request, so one client shared by threads
could send one caller's token for another. The token handed to the SDK has no
refresh token and no expiry, so the SDK never tries to refresh on its own. These calls are
made when a consent is stored and on the facts schedule, never on the proxy's path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from xero_python.accounting import AccountingApi
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import ApiException, OpenApiException
from xero_python.identity import IdentityApi

from gateway.config import XeroConfig
from gateway.xero.identity import retry_after
from gateway.xero.tokens import XeroError, XeroRejected, XeroUnavailable

DEFAULT_TIMEOUT = (5.0, 10.0)  # seconds to connect, to read; the SDK ignores a bare float
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class TenantConnection:
    """One entry of Xero's ``GET /connections``."""

    id: str
    auth_event_id: str
    tenant_id: str
    tenant_type: str
    tenant_name: str
    created: dt.datetime | None
    updated: dt.datetime | None


@dataclass(frozen=True, kw_only=True)
class OrganisationFacts:
    """What the gateway keeps of a tenant's ``Organisation``."""

    tenant_id: str
    name: str
    legal_name: str | None
    country_code: str  # "AU", "NZ", ...
    short_code: str | None
    base_currency: str | None
    organisation_type: str | None


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


class TenantReader:
    """Connections and organisation facts, read with an access token the caller holds."""

    def __init__(
        self, config: XeroConfig, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> None:
        self._config = config
        self._timeout = timeout
        self._api_url = config.api_url.rstrip("/")

    def _client(self, access_token: str) -> ApiClient:
        # Configuration() returns a shallow copy of the first one ever made in the process
        # (its metaclass keeps a default), arguments and all: the token object is set on the
        # copy, or every client would share the first caller's.
        configuration = Configuration()
        configuration.oauth2_token = OAuth2Token(client_id=self._config.client_id, client_secret="")
        client = ApiClient(configuration, pool_threads=1)
        # urllib3 would retry on its own, sleeping out a 429's or 503's Retry-After (a day, for
        # the daily limit) in this thread; the caller decides about retries instead.
        client.rest_client.pool_manager.connection_pool_kw["retries"] = False

        @client.oauth2_token_getter  # type: ignore[untyped-decorator]
        def _token() -> dict[str, Any]:
            # update_token insists on scope (a list) and expires_in; no expires_at and no
            # refresh token, so the SDK neither judges expiry nor refreshes.
            return {
                "access_token": access_token,
                "token_type": "Bearer",
                "scope": [],
                "expires_in": None,
            }

        return client

    async def _call(self, what: str, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except ApiException as exc:
            status = exc.status or 0
            headers = exc.headers or {}
            if status >= 500 or status == 429:
                raise XeroUnavailable(
                    f"Xero answered {status} to {what}; try again",
                    retry_after=retry_after(headers.get("Retry-After")),
                ) from None
            if status:
                raise XeroRejected(f"Xero refused {what}: {status}", status=status) from None
            raise XeroUnavailable(f"Xero could not be asked for {what}; try again") from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise XeroUnavailable(f"Xero could not be reached for {what}; try again") from None
        except (OpenApiException, ValueError):
            raise XeroError(f"Xero's answer to {what} could not be read") from None

    async def connections(
        self, access_token: str, *, auth_event_id: str | None = None
    ) -> list[TenantConnection]:
        """The user's connections to the app; those of one consent when ``auth_event_id``."""

        def work() -> list[TenantConnection]:
            api = IdentityApi(self._client(access_token), base_url=self._api_url)
            extra = {"auth_event_id": auth_event_id} if auth_event_id else {}
            found = api.get_connections(_request_timeout=self._timeout, **extra)
            return [
                TenantConnection(
                    id=str(c.id),
                    auth_event_id=str(c.auth_event_id),
                    tenant_id=str(c.tenant_id),
                    tenant_type=str(c.tenant_type),
                    tenant_name=str(c.tenant_name or ""),
                    created=c.created_date_utc,
                    updated=c.updated_date_utc,
                )
                for c in found or []
            ]

        return await self._call("the list of connections", work)

    async def disconnect(self, access_token: str, connection_id: str) -> bool:
        """Delete a connection at Xero; False when Xero does not know it (404)."""

        def work() -> None:
            api = IdentityApi(self._client(access_token), base_url=self._api_url)
            api.delete_connection(connection_id, _request_timeout=self._timeout)

        try:
            await self._call("a disconnection", work)
        except XeroRejected as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def organisation(self, access_token: str, tenant_id: str) -> OrganisationFacts:
        """A tenant's Organisation facts (``GET /api.xro/2.0/Organisation``)."""

        def work() -> OrganisationFacts:
            api = AccountingApi(self._client(access_token), base_url=f"{self._api_url}/api.xro/2.0")
            found = api.get_organisations(tenant_id, _request_timeout=self._timeout)
            organisations = getattr(found, "organisations", None) or []
            if not organisations:
                raise ValueError("no organisation in the answer")
            org = organisations[0]
            country = _enum_value(org.country_code)
            if not country:
                raise ValueError("the organisation has no country code")
            return OrganisationFacts(
                tenant_id=tenant_id,
                name=str(org.name or ""),
                legal_name=org.legal_name,
                country_code=country,
                short_code=org.short_code,
                base_currency=_enum_value(org.base_currency),
                organisation_type=_enum_value(org.organisation_type),
            )

        return await self._call("the organisation", work)

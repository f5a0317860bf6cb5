"""Helpers shared by the admin API tests: minting tokens, headers, the shipped policy document."""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.admin.tokens import create_admin_token
from gateway.enforcement.policy_files import load_policy_file
from gateway.policy import policy_to_document
from gateway.sandbox.demo import SHIPPED_POLICIES
from tests.conftest import RunningGateway

API = "/_gateway/admin/api"
AU_POLICY = "au-ato-2fa"
AU_MEMBER, NZ_MEMBER = "max@harbour.example", "leo@kauri.example"
AU_ORG, NZ_ORG = "Harbour Accounting (AU)", "Kauri Design Studio (NZ)"
HTML = {"Accept": "text/html"}
PROBLEM = "application/problem+json"


async def mint(gateway: RunningGateway, *scopes: str, ttl: float = 3600, name: str = "ci") -> str:
    """A fresh admin token with ``scopes`` (all of them if none are named)."""
    raw, _ = await create_admin_token(
        gateway.services.store,
        name=name,
        scopes=scopes or ("admin",),
        ttl_seconds=ttl,
        now=gateway.clock(),
        by="test",
    )
    return raw


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def shipped_document() -> dict[str, Any]:
    return policy_to_document(load_policy_file(SHIPPED_POLICIES / f"{AU_POLICY}.toml"))


async def problem(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The problem+json body of an error response, after checking its framing."""
    assert response.content_type == PROBLEM
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await response.json(content_type=PROBLEM)
    assert body["status"] == response.status
    return body


async def org_id(gateway: RunningGateway, name: str) -> str:
    org = await gateway.services.store.organisations.find_by_name(name)
    assert org is not None
    return org.id

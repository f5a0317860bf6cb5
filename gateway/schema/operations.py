"""The bodies of the gateway's public operational endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class HealthChecks(BaseModel):
    store: Literal["ok", "failing"]


class Health(BaseModel):
    """The gateway's liveness and its store's."""

    status: Literal["ok", "unavailable"]
    checks: HealthChecks

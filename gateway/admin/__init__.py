"""The admin API: bearer-token JSON endpoints for policies, tenants, reports and the audit trail."""

from __future__ import annotations

from gateway.admin.api import add_routes

__all__ = ["add_routes"]

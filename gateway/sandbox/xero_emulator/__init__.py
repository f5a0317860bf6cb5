"""A Xero stand-in on loopback: identity, connections and the accounting API."""

from gateway.sandbox.xero_emulator.fixtures import (
    AU_TENANT,
    DEMO_CLIENT,
    DEMO_TENANTS,
    DEMO_USER,
    NZ_TENANT,
    STARTER_DAY_LIMIT,
    EmulatedClient,
    EmulatedContact,
    EmulatedTenant,
    EmulatedUser,
)
from gateway.sandbox.xero_emulator.server import XeroEmulator

__all__ = [
    "AU_TENANT",
    "DEMO_CLIENT",
    "DEMO_TENANTS",
    "DEMO_USER",
    "NZ_TENANT",
    "STARTER_DAY_LIMIT",
    "EmulatedClient",
    "EmulatedContact",
    "EmulatedTenant",
    "EmulatedUser",
    "XeroEmulator",
]

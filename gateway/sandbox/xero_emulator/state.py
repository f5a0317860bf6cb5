"""Everything one running emulator holds, shared by its routes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.sandbox.xero_emulator.access_tokens import Signer
from gateway.sandbox.xero_emulator.accounting import Ledger
from gateway.sandbox.xero_emulator.counters import Counters
from gateway.sandbox.xero_emulator.fixtures import EmulatedClient, EmulatedTenant, EmulatedUser
from gateway.sandbox.xero_emulator.grants import Grants
from gateway.sandbox.xero_emulator.limits import Limits
from gateway.sandbox.xero_emulator.switches import Switches


@dataclass
class EmulatorState:
    """The emulator's tenants, apps and user, its grants, limits, counters and switches.

    ``consent_tenants``: the tenant ids the next consents connect (None: every tenant).
    ``require_pkce``: whether authorize insists on an S256 ``code_challenge``.
    """

    clock: Clock
    tenants: dict[str, EmulatedTenant]
    clients: dict[str, EmulatedClient]
    user: EmulatedUser
    consent_tenants: tuple[str, ...] | None = None
    require_pkce: bool = True
    grants: Grants = field(default_factory=Grants)
    signer: Signer = field(default_factory=Signer)
    limits: Limits = field(default_factory=Limits)
    counters: Counters = field(default_factory=Counters)
    switches: Switches = field(default_factory=Switches)
    ledgers: dict[str, Ledger] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        clock: Clock,
        tenants: Iterable[EmulatedTenant],
        clients: Iterable[EmulatedClient],
        user: EmulatedUser,
    ) -> EmulatorState:
        now = clock()
        listed = {t.tenant_id.lower(): t for t in tenants}
        return cls(
            clock=clock,
            tenants=listed,
            clients={c.client_id: c for c in clients},
            user=user,
            ledgers={tid: Ledger.seeded(t, now=now) for tid, t in listed.items()},
        )

    def add_client(self, client: EmulatedClient) -> None:
        """Register (or replace) an app, e.g. with the redirect URI of a gateway on a free port."""
        self.clients[client.client_id] = client

    def consented_tenants(self) -> tuple[str, ...]:
        if self.consent_tenants is None:
            return tuple(self.tenants)
        return tuple(t.lower() for t in self.consent_tenants)

"""The emulator's organisations, app and Xero user: the demo's AU and NZ tenants and their data."""

from __future__ import annotations

from dataclasses import dataclass

STANDARD_DAY_LIMIT = 5_000  # calls a day per tenant above the Starter tier
STARTER_DAY_LIMIT = 1_000


@dataclass(frozen=True, kw_only=True)
class EmulatedContact:
    contact_id: str
    name: str
    email: str


@dataclass(frozen=True, kw_only=True)
class EmulatedTenant:
    """One Xero organisation: what ``Organisation`` answers and its daily call budget."""

    tenant_id: str  # a UUID, as Xero's are
    name: str
    legal_name: str
    country_code: str  # Organisation.CountryCode
    version: str  # Organisation.Version: "AU", "NZ", "GLOBAL", ...
    base_currency: str
    timezone: str  # Xero's own zone names, not IANA's
    short_code: str
    organisation_type: str = "COMPANY"
    day_limit: int = STANDARD_DAY_LIMIT
    contacts: tuple[EmulatedContact, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EmulatedClient:
    """A Xero app registration: the redirect URIs it may use; no secret for a PKCE-only app."""

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class EmulatedUser:
    """The Xero user who consents (the emulator consents automatically as this user)."""

    user_id: str
    email: str
    given_name: str
    family_name: str


AU_TENANT = EmulatedTenant(
    tenant_id="2fdd1629-795a-4142-ac83-8f1e499ad080",
    name="Harbour Accounting Pty Ltd",
    legal_name="Harbour Accounting Pty Ltd",
    country_code="AU",
    version="AU",
    base_currency="AUD",
    timezone="AUSEASTERNSTANDARDTIME",
    short_code="!hB7q2",
    contacts=(
        EmulatedContact(
            contact_id="03a8be75-2b8b-4c42-a569-00f5f8ba71eb",
            name="Bondi Surf Supplies",
            email="accounts@bondisurf.example",
        ),
        EmulatedContact(
            contact_id="1036d2ca-f49a-434d-bdb6-13a849ce5f93",
            name="Parramatta Print Co",
            email="hello@parraprint.example",
        ),
    ),
)
NZ_TENANT = EmulatedTenant(
    tenant_id="a07f664b-b5e3-4de7-9153-44e0fd9236fa",
    name="Kauri Design Studio Ltd",
    legal_name="Kauri Design Studio Limited",
    country_code="NZ",
    version="NZ",
    base_currency="NZD",
    timezone="NEWZEALANDSTANDARDTIME",
    short_code="!kD9x4",
    day_limit=STARTER_DAY_LIMIT,
    contacts=(
        EmulatedContact(
            contact_id="f5109ba1-6d5e-4ee7-a0f7-f8cf5998c550",
            name="Ponsonby Coffee Roasters",
            email="orders@ponsonbycoffee.example",
        ),
    ),
)
DEMO_TENANTS = (AU_TENANT, NZ_TENANT)

DEMO_CLIENT = EmulatedClient(
    client_id="DEMOCLIENT0000000000000000000001",
    client_secret="demo-client-secret-not-for-production",  # noqa: S106 - the emulator's own
    redirect_uris=("http://127.0.0.1:8080/_gateway/xero/callback",),
)
DEMO_USER = EmulatedUser(
    user_id="c59748d9-5851-42e4-b6b9-49cd5bd8598e",
    email="ava@harbour.example",
    given_name="Ava",
    family_name="Nguyen",
)

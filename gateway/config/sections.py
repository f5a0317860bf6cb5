"""The configuration's sections: one frozen dataclass per TOML table, and the whole."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from gateway.config.checks import (
    XERO_TIERS,
    check_hosts,
    check_http_url,
    check_issuer,
    check_networks,
    check_one_of,
    check_origins,
    check_paths,
    check_port,
    check_positive,
    check_previous_secret_keys,
    check_required_http_url,
    check_secret_key,
    check_tenant_tiers,
    setting,
)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = setting("127.0.0.1", doc="Address the front listener (browsers) binds to.")
    port: int = setting(
        8080, doc="Port of the front listener; 0 picks a free one.", check=check_port
    )
    max_line_size: int = setting(
        8190, doc="Longest request line accepted, in bytes; longer gets 431.", check=check_positive
    )
    max_field_size: int = setting(
        8190, doc="Longest header field accepted, in bytes; longer gets 431.", check=check_positive
    )
    max_head_size: int = setting(
        64 * 1024,
        doc="Largest request head (request line and headers together), in bytes; larger gets 431.",
        check=check_positive,
    )
    max_connections: int = setting(
        1024,
        doc="Client connections open at once; past it a new one gets 503 and is closed.",
        check=check_positive,
    )
    max_body_size: int = setting(
        50 * 1024 * 1024,
        doc="Largest request body passed to the app, in bytes; larger gets 413.",
        check=check_positive,
    )
    idle_timeout: float = setting(
        75.0,
        doc="Seconds a client connection may go without a complete request head (idle "
        "keep-alive, or a head sent slowly), or a body to the gateway's own pages may take, "
        "before it is closed; keep it above a front proxy's idle timeout for its connections.",
        check=check_positive,
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        doc="Host header values (host or host:port) the gateway answers; empty allows any.",
        check=check_hosts,
    )
    websocket_origins: tuple[str, ...] = setting(
        (),
        doc="Origins besides the gateway's own whose pages may open WebSockets through it.",
        check=check_origins,
    )
    public_url: str = setting(
        "",
        doc="The address browsers reach the gateway by (an origin, e.g. "
        "'https://app.example.com'), for links in emails; empty: the first of allowed_hosts, "
        "else the address the front listener was reached on.",
        check=lambda value: check_origins((value,)) if value else None,
    )
    metrics_allow: tuple[str, ...] = setting(
        ("127.0.0.1/32", "::1/128"),
        doc="Client networks allowed to read /_gateway/metrics.",
        check=check_networks,
    )


@dataclass(frozen=True, kw_only=True)
class XeroProxyConfig:
    host: str = setting("127.0.0.1", doc="Address the Xero listener (the app's backend) binds to.")
    port: int = setting(
        8081, doc="Port of the Xero listener; 0 picks a free one.", check=check_port
    )
    default_tier: str = setting(
        "standard",
        doc="Xero pricing tier of a tenant not named in tenant_tiers: 'starter' (1,000 calls "
        "a day) or 'standard' (5,000).",
        check=check_one_of(*XERO_TIERS),
    )
    tenant_tiers: tuple[str, ...] = setting(
        (),
        doc="Tenants on another tier than default_tier, as 'tenant-id=starter' or "
        "'tenant-id=standard'.",
        check=check_tenant_tiers,
    )
    queue_size: int = setting(
        100,
        doc="Calls per tenant that may wait for Xero's rate limits; past it a call gets 429 "
        "at once.",
        check=check_positive,
    )
    max_wait: float = setting(
        30.0,
        doc="Seconds a call may wait for Xero's rate limits and retries before the app gets "
        "429 with Retry-After; a call that could not start within it is refused at once.",
        check=check_positive,
    )
    retry_after_cap: float = setting(
        600.0,
        doc="Longest wait honoured from a Retry-After in Xero's 429, in seconds.",
        check=check_positive,
    )
    retry_attempts: int = setting(
        3,
        doc="Tries in all for a GET, HEAD or Idempotency-Key request that meets a 5xx or a "
        "timeout (others are never tried again).",
        check=check_positive,
    )
    retry_backoff: float = setting(
        0.5,
        doc="Seconds before the first retry; each later one waits about twice as long, jittered.",
        check=check_positive,
    )
    metrics_tenants: int = setting(
        50,
        doc="Tenants that get their own label in the Xero rate metrics; calls of any further "
        "tenant are counted under 'other'.",
        check=check_positive,
    )


@dataclass(frozen=True, kw_only=True)
class UpstreamConfig:
    url: str = setting(
        "", doc="Base URL of the app behind the gateway (required).", check=check_required_http_url
    )
    connect_timeout: float = setting(
        5.0, doc="Seconds to wait for a connection to the app; then 502.", check=check_positive
    )
    read_timeout: float = setting(
        60.0, doc="Seconds to wait for the app to answer; then 504.", check=check_positive
    )
    websocket_recheck_seconds: float = setting(
        15.0,
        doc="How often an open WebSocket's session is re-checked; a signed-out one is closed.",
        check=check_positive,
    )
    public_paths: tuple[str, ...] = setting(
        (),
        doc="Paths served without sign-in: '/x/' covers a subtree, '/x*' a prefix, else exact.",
        check=check_paths,
    )
    drop_underscore_headers: bool = setting(
        True,
        doc="Never pass on a request header whose name has an underscore (apps fold '_' "
        "onto '-'); false only for an app that needs such names.",
    )


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    path: str = setting("var/gateway.sqlite3", doc="SQLite database file (created if missing).")
    busy_timeout_ms: int = setting(
        5000, doc="How long a write waits for a locked database, in ms.", check=check_positive
    )


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    secret_key: str = setting(
        "",
        doc="Key for CSRF tokens and encryption at rest (>= 32 chars). Keep it out of the repo.",
        check=check_secret_key,
        env="XERO_GATEWAY_SECRET_KEY",
    )
    previous_secret_keys: tuple[str, ...] = setting(
        (),
        doc="Former secret keys, still accepted for what they made, so secret_key can be rotated.",
        check=check_previous_secret_keys,
        env="XERO_GATEWAY_PREVIOUS_SECRET_KEYS",
    )
    cookie_secure: bool = setting(
        True,
        doc="Send cookies with Secure and the __Host- prefix; false only for plain-http dev.",
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        doc="Addresses/networks of proxies in front of the gateway whose X-Forwarded-* is trusted.",
        check=check_networks,
    )
    totp_issuer: str = setting(
        "Xero Gateway",
        doc="Name authenticator apps show beside the account (the otpauth URI's issuer).",
        check=check_issuer,
    )


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    idle_timeout_minutes: float = setting(
        30, doc="A session unused this long ends (server-side).", check=check_positive
    )
    absolute_timeout_hours: float = setting(
        12, doc="A session ends this long after sign-in, however active.", check=check_positive
    )


@dataclass(frozen=True, kw_only=True)
class AdminConfig:
    session_idle_minutes: float = setting(
        15,
        doc="A gateway admin's session unused this long ends (server-side).",
        check=check_positive,
    )
    session_absolute_hours: float = setting(
        8,
        doc="A gateway admin's session ends this long after sign-in, however active.",
        check=check_positive,
    )


@dataclass(frozen=True, kw_only=True)
class ThrottleConfig:
    account_failures: int = setting(
        5,
        doc="Failed sign-ins per account within the window, for each browser that signed in "
        "to it before and for all others together, before they must wait.",
        check=check_positive,
    )
    address_failures: int = setting(
        20,
        doc="Failed sign-ins per client address within the window before it is locked.",
        check=check_positive,
    )
    window_minutes: float = setting(
        15, doc="Window over which failures are counted.", check=check_positive
    )
    lockout_minutes: float = setting(
        15, doc="How long a locked account or address must wait.", check=check_positive
    )
    slowdown_seconds: float = setting(
        30,
        doc="Wait for devices new to an account once its failures reach account_failures; "
        "it doubles with each further failure, up to lockout_minutes.",
        check=check_positive,
    )


@dataclass(frozen=True, kw_only=True)
class XeroConfig:
    client_id: str = setting("", doc="OAuth client id of the gateway's Xero app.")
    client_secret: str = setting(
        "", doc="OAuth client secret of the Xero app.", env="XERO_GATEWAY_XERO_CLIENT_SECRET"
    )
    redirect_uri: str = setting(
        "",
        doc="Callback URL registered with Xero (…/_gateway/xero/callback).",
        check=check_http_url,
    )
    scopes: tuple[str, ...] = setting(
        ("openid", "profile", "email", "offline_access", "accounting.settings.read"),
        doc="OAuth scopes asked for when connecting Xero.",
    )
    authorize_url: str = setting(
        "https://login.xero.com/identity/connect/authorize",
        doc="Xero's authorize endpoint (change only for an emulator).",
        check=check_http_url,
    )
    token_url: str = setting(
        "https://identity.xero.com/connect/token",
        doc="Xero's token endpoint.",
        check=check_http_url,
    )
    revoke_url: str = setting(
        "https://identity.xero.com/connect/revocation",
        doc="Xero's revocation endpoint.",
        check=check_http_url,
    )
    api_url: str = setting("https://api.xero.com", doc="Xero's API base URL.", check=check_http_url)
    webhook_key: str = setting(
        "",
        doc="Webhook signing key from the Xero app's Webhooks page; empty turns the webhook"
        " endpoint (/_gateway/xero/webhooks) off.",
        env="XERO_GATEWAY_XERO_WEBHOOK_KEY",
    )
    webhook_forward_url: str = setting(
        "",
        doc="URL of the app's endpoint that verified Xero webhook events are forwarded to,"
        " signed, one event per POST; empty acknowledges events without keeping them.",
        check=check_http_url,
    )
    recheck_minutes: float = setting(
        60.0,
        doc="How often each connection's tenants and their Organisation facts (country, name)"
        " are read again from Xero, in minutes, so a tenant removed or changed at Xero changes"
        " the policy scope within this interval.",
        check=check_positive,
    )


@dataclass(frozen=True, kw_only=True)
class SmsConfig:
    driver: str = setting(
        "http",
        doc="How codes are texted: 'http' (the provider below) or 'log' (written to the log, "
        "codes and all: for the demo and development only).",
        check=check_one_of("http", "log"),
    )
    provider_url: str = setting(
        "",
        doc="Base URL of the Twilio-compatible SMS API (e.g. https://api.twilio.com); "
        "empty disables SMS delivery.",
        check=check_http_url,
    )
    account: str = setting("", doc="Account id at the SMS provider (Twilio's Account SID).")
    api_key: str = setting("", doc="API key for the SMS provider.", env="XERO_GATEWAY_SMS_API_KEY")
    sender: str = setting("", doc="Sender id or number shown on the phone.")
    max_per_hour: int = setting(
        100,
        doc="Text messages the gateway sends per hour in all, whoever asks: a guard against "
        "SMS toll fraud.",
        check=check_positive,
    )


@dataclass(frozen=True, kw_only=True)
class EmailConfig:
    driver: str = setting(
        "smtp",
        doc="How codes are emailed: 'smtp' (the server below) or 'log' (written to the log, "
        "codes and all: for the demo and development only).",
        check=check_one_of("smtp", "log"),
    )
    host: str = setting("", doc="SMTP server host; empty disables email delivery.")
    port: int = setting(587, doc="SMTP server port.", check=check_port)
    starttls: bool = setting(True, doc="Upgrade the SMTP connection with STARTTLS.")
    tls: bool = setting(
        False, doc="Connect with TLS from the start (SMTPS, usually port 465) instead of STARTTLS."
    )
    username: str = setting("", doc="SMTP user name, if the server asks for one.")
    password: str = setting("", doc="SMTP password.", env="XERO_GATEWAY_EMAIL_PASSWORD")
    sender: str = setting("", doc="From address of the gateway's mail.")


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    level: str = setting(
        "INFO", doc="Log level.", check=check_one_of("DEBUG", "INFO", "WARNING", "ERROR")
    )
    format: str = setting(
        "json", doc="'json' (one object per line) or 'text'.", check=check_one_of("json", "text")
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    xero_proxy: XeroProxyConfig = field(default_factory=XeroProxyConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    xero: XeroConfig = field(default_factory=XeroConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}

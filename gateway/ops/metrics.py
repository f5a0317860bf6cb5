"""Prometheus metrics of one gateway: requests by outcome, upstream latency, live sessions,
and the Xero rate governor's queues, waits, refusals and 429s."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.ops.loop_metrics import LoopCounter, LoopHistogram, ReadGauge

OUTCOMES = (
    "proxied",
    "public",
    "login_redirect",
    "mfa_prompt",
    "mfa_blocked",
    "unauthenticated",
    "gateway",
    "upstream_error",
    "rejected",
    "error",
)

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# The Xero listener's latency buckets: prometheus_client's default ones.
XERO_LATENCY_BUCKETS = tuple(b for b in Histogram.DEFAULT_BUCKETS if b != float("inf"))
XERO_OUTCOMES = (
    "forwarded",
    "connections",
    "unauthenticated",
    "tenant_not_linked",
    "mfa_required",
    "needs_reconnect",
    "rate_limited",
    "xero_unavailable",
    "rejected",
    "error",
)
# One tenant's calls to Xero at a moment: (tenant id, in flight, waiting), as the rate
# governor counts them.
XeroLoad = tuple[str, int, int]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds a call to Xero waited for the rate governor: up to a minute window and past it.
XERO_WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# The tenant label of every tenant past ``xero_tenants`` distinct ones.
OTHER_TENANTS = "other"


class Metrics:
    """One registry per gateway (not the global one), so tests and replicas stay apart."""

    def __init__(
        self,
        *,
        sessions: Callable[[], float] | None = None,
        statements: Callable[[], float] | None = None,
        xero_tenants: int = 50,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Registered first, so the exposition keeps its order: requests, latency, the rest.
        self._requests = LoopCounter(
            "gateway_requests",
            "Requests on the front listener by outcome.",
            "outcome",
            OUTCOMES,
            registry=self.registry,
        )
        self._latency = LoopHistogram(
            "gateway_upstream_latency_seconds",
            "Time from forwarding a request to the app until its response headers arrived.",
            LATENCY_BUCKETS,
            label="status_class",
            values=STATUS_CLASSES,
            registry=self.registry,
        )
        self._latency_series = tuple(self._latency.series.values())
        self.sessions = Gauge(
            "gateway_sessions_active",
            "Sessions held in memory by this gateway.",
            registry=self.registry,
        )
        if sessions is not None:
            self.sessions.set_function(sessions)
        self.statements = Gauge(
            "gateway_store_statements",
            "SQL statements run by this gateway since it started (a warm request adds none).",
            registry=self.registry,
        )
        if statements is not None:
            self.statements.set_function(statements)
        self.connections_refused = Counter(
            "gateway_connections_refused",
            "Client connections refused because [server] max_connections were open.",
            registry=self.registry,
        )
        self.logins = Counter(
            "gateway_logins",
            "Sign-in attempts by result.",
            ["result"],
            registry=self.registry,
        )

        self.xero_refreshes = Counter(
            "gateway_xero_refreshes",
            "Refreshes of Xero token sets by outcome (refreshed, invalid_grant, unavailable,"
            " rejected, lost_race).",
            ["outcome"],
            registry=self.registry,
        )

        # Counted on every call through the Xero listener: without prometheus_client's lock.
        self.xero_api_requests = LoopCounter(
            "gateway_xero_api_requests",
            "Requests on the Xero listener by outcome: forwarded (Xero's answer passed on),"
            " connections (answered by the gateway), unauthenticated, tenant_not_linked,"
            " mfa_required, needs_reconnect, rate_limited, xero_unavailable, rejected.",
            "outcome",
            XERO_OUTCOMES,
            registry=self.registry,
        )
        self.xero_api_latency = LoopHistogram(
            "gateway_xero_api_upstream_seconds",
            "Seconds from sending a call to Xero until its response head, by status class.",
            XERO_LATENCY_BUCKETS,
            label="status",
            values=STATUS_CLASSES,
            registry=self.registry,
        )

        self.xero_webhooks = Counter(
            "gateway_xero_webhook_events",
            "Xero webhook events by what became of them: received (stored), delivered (the app"
            " took it), retried (an attempt failed, tried again later), abandoned (given up),"
            " dropped (acknowledged unkept: no [xero] webhook_forward_url).",
            ["result"],
            registry=self.registry,
        )
        self.xero_webhook_posts = Counter(
            "gateway_xero_webhook_posts",
            "Posts to the Xero webhook endpoint by answer: accepted, intent (no events),"
            " bad_signature, too_large, malformed, unavailable (the store failed; Xero retries).",
            ["answer"],
            registry=self.registry,
        )
        # Per tenant series, for at most ``xero_tenants`` tenants (the first this process
        # meets); later ones share the label "other", so a gateway serving many tenants
        # keeps a bounded number of series. The wait histogram has no tenant label at all.
        self._xero_tenants = xero_tenants
        self._xero_labels: set[str] = set()
        # Calls in flight and waiting are the rate governor's own counts, read at scrape time
        # (``watch_xero_load``): nothing to update on a call.
        self._xero_load: Callable[[], Iterable[XeroLoad]] = tuple
        ReadGauge(
            "gateway_xero_queue_depth",
            "Calls waiting for Xero's rate limits, by tenant.",
            "tenant",
            lambda: self._xero_by_label(waiting=True),
            registry=self.registry,
        )
        ReadGauge(
            "gateway_xero_in_flight",
            "Calls to Xero in flight, by tenant.",
            "tenant",
            lambda: self._xero_by_label(waiting=False),
            registry=self.registry,
        )
        self.xero_waits = LoopHistogram(
            "gateway_xero_wait_seconds",
            "Time a call to Xero waited for the rate governor before it started.",
            XERO_WAIT_BUCKETS,
            registry=self.registry,
        )
        self._xero_wait_series = self.xero_waits.series[""]
        self.xero_refusals = Counter(
            "gateway_xero_refusals",
            "Calls to Xero the rate governor refused (429 to the app), by tenant and reason.",
            ["tenant", "reason"],
            registry=self.registry,
        )
        self.xero_throttled = Counter(
            "gateway_xero_throttled",
            "429 answers from Xero, by tenant and X-Rate-Limit-Problem.",
            ["tenant", "problem"],
            registry=self.registry,
        )

    def count_refresh(self, outcome: str) -> None:
        self.xero_refreshes.labels(outcome=outcome).inc()

    def xero_tenant_label(self, tenant_id: str) -> str:
        """The tenant's label: its id for the first ``xero_tenants`` tenants, else "other"."""
        if tenant_id in self._xero_labels:
            return tenant_id
        if len(self._xero_labels) < self._xero_tenants:
            self._xero_labels.add(tenant_id)
            return tenant_id
        return OTHER_TENANTS

    def watch_xero_load(self, load: Callable[[], Iterable[XeroLoad]]) -> None:
        """Read the Xero calls in flight and waiting from ``load`` at every scrape."""
        self._xero_load = load

    def _xero_by_label(self, *, waiting: bool) -> dict[str, float]:
        readings: dict[str, float] = {}
        for tenant_id, in_flight, queued in self._xero_load():
            label = self.xero_tenant_label(tenant_id)
            readings[label] = readings.get(label, 0) + (queued if waiting else in_flight)
        return readings

    def xero_waited(self, seconds: float) -> None:
        self._xero_wait_series.observe(seconds)

    def xero_refused(self, tenant_id: str, reason: str) -> None:
        self.xero_refusals.labels(tenant=self.xero_tenant_label(tenant_id), reason=reason).inc()

    def xero_rate_limited(self, tenant_id: str, problem: str) -> None:
        self.xero_throttled.labels(tenant=self.xero_tenant_label(tenant_id), problem=problem).inc()

    def refuse_connection(self) -> None:
        self.connections_refused.inc()

    def count(self, outcome: str) -> None:
        self._requests.inc(outcome)  # KeyError for an outcome not in OUTCOMES

    def observe_upstream(self, status: int, seconds: float) -> None:
        self._latency_series[min(max(status // 100, 1), 5) - 1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

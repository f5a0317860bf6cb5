"""Prometheus metrics of one gateway: requests by outcome, upstream latency, live sessions,
and the Xero rate governor's queues, waits, refusals and 429s."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
# The "le" label of each bucket, +Inf last, spelled as prometheus_client spells it.
_LE = tuple(floatToGoString(b) for b in (*LATENCY_BUCKETS, float("inf")))  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds a call to Xero waited for the rate governor: up to a minute window and past it.
XERO_WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# The tenant label of every tenant past ``xero_tenants`` distinct ones.
OTHER_TENANTS = "other"
XERO_SERIES_KEPT = 10_000  # tenant ids whose in-flight series is kept at hand


def _created_series() -> bool:
    # prometheus_client's own switch (PROMETHEUS_DISABLE_CREATED_SERIES), honoured as its
    # Counter and Histogram honour it.
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


class _Latency:
    """One status class's histogram: per-bucket counts (not cumulative) and the sum."""

    __slots__ = ("counts", "created", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.created = time.time()


class _HotPathCollector(Collector):
    """Requests by outcome and upstream latency, counted with plain ints and floats.

    Every proxied request updates both, so they skip prometheus_client's per-update lock:
    they are only ever updated and read on the event loop's thread. At scrape time they
    are exposed under the names, types and series a Counter and a Histogram would give.
    """

    def __init__(self) -> None:
        self.requests = dict.fromkeys(OUTCOMES, 0)
        self.requests_created = {name: time.time() for name in OUTCOMES}
        self.latency = {cls: _Latency() for cls in STATUS_CLASSES}

    def describe(self) -> Iterable[Metric]:
        return [self._requests_metric(), self._latency_metric()]

    def _requests_metric(self) -> Metric:
        return Metric("gateway_requests", "Requests on the front listener by outcome.", "counter")

    def _latency_metric(self) -> Metric:
        return Metric(
            "gateway_upstream_latency_seconds",
            "Time from forwarding a request to the app until its response headers arrived.",
            "histogram",
        )

    def collect(self) -> Iterable[Metric]:
        created = _created_series()
        requests = self._requests_metric()
        for outcome, count in self.requests.items():
            labels = {"outcome": outcome}
            requests.add_sample("gateway_requests_total", labels, float(count))
            if created:
                requests.add_sample(
                    "gateway_requests_created", labels, self.requests_created[outcome]
                )
        latency = self._latency_metric()
        name = latency.name
        for cls, histogram in self.latency.items():
            acc = 0.0
            for le, count in zip(_LE, histogram.counts, strict=True):
                acc += count
                labels = {"status_class": cls, "le": le}
                latency.add_sample(name + "_bucket", labels, acc)
            labels = {"status_class": cls}
            latency.add_sample(name + "_count", labels, acc)
            latency.add_sample(name + "_sum", labels, histogram.sum)
            if created:
                latency.add_sample(name + "_created", labels, histogram.created)
        return [requests, latency]


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
        self._hot = _HotPathCollector()
        self.registry.register(self._hot)
        self._requests = self._hot.requests
        self._latency = self._hot.latency
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

        self.xero_api_requests = Counter(
            "gateway_xero_api_requests",
            "Requests on the Xero listener by outcome: forwarded (Xero's answer passed on),"
            " connections (answered by the gateway), unauthenticated, tenant_not_linked,"
            " mfa_required, needs_reconnect, rate_limited, xero_unavailable, rejected.",
            ["outcome"],
            registry=self.registry,
        )
        self.xero_api_latency = Histogram(
            "gateway_xero_api_upstream_seconds",
            "Seconds from sending a call to Xero until its response head, by status class.",
            ["status"],
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
        # The in-flight gauge's series by tenant id, looked up once per tenant: it moves twice
        # on every call to Xero. Tenant ids come from connected tenants only; kept bounded.
        self._xero_in_flight_series: dict[str, Any] = {}
        self.xero_queue_depth = Gauge(
            "gateway_xero_queue_depth",
            "Calls waiting for Xero's rate limits, by tenant.",
            ["tenant"],
            registry=self.registry,
        )
        self.xero_in_flight = Gauge(
            "gateway_xero_in_flight",
            "Calls to Xero in flight, by tenant.",
            ["tenant"],
            registry=self.registry,
        )
        self.xero_waits = Histogram(
            "gateway_xero_wait_seconds",
            "Time a call to Xero waited for the rate governor before it started.",
            buckets=XERO_WAIT_BUCKETS,
            registry=self.registry,
        )
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

    def xero_queued(self, tenant_id: str, change: int) -> None:
        self.xero_queue_depth.labels(tenant=self.xero_tenant_label(tenant_id)).inc(change)

    def xero_started(self, tenant_id: str, change: int) -> None:
        series = self._xero_in_flight_series.get(tenant_id)
        if series is None:
            if len(self._xero_in_flight_series) >= XERO_SERIES_KEPT:
                self._xero_in_flight_series.clear()
            series = self.xero_in_flight.labels(tenant=self.xero_tenant_label(tenant_id))
            self._xero_in_flight_series[tenant_id] = series
        series.inc(change)

    def xero_waited(self, seconds: float) -> None:
        self.xero_waits.observe(seconds)

    def xero_refused(self, tenant_id: str, reason: str) -> None:
        self.xero_refusals.labels(tenant=self.xero_tenant_label(tenant_id), reason=reason).inc()

    def xero_rate_limited(self, tenant_id: str, problem: str) -> None:
        self.xero_throttled.labels(tenant=self.xero_tenant_label(tenant_id), problem=problem).inc()

    def refuse_connection(self) -> None:
        self.connections_refused.inc()

    def count(self, outcome: str) -> None:
        self._requests[outcome] += 1  # KeyError for an outcome not in OUTCOMES, as before

    def observe_upstream(self, status: int, seconds: float) -> None:
        histogram = self._latency[STATUS_CLASSES[min(max(status // 100, 1), 5) - 1]]
        # Prometheus buckets are "less than or equal": the first bound >= seconds.
        histogram.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        histogram.sum += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)

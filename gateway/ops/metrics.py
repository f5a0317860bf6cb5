"""Prometheus metrics of one gateway: requests by outcome, upstream latency, live sessions."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One registry per gateway (not the global one), so tests and replicas stay apart."""

    def __init__(
        self,
        *,
        sessions: Callable[[], float] | None = None,
        statements: Callable[[], float] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        requests = Counter(
            "gateway_requests",
            "Requests on the front listener by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        # Children bound once: the hot path only increments.
        self.outcome = {name: requests.labels(outcome=name) for name in OUTCOMES}
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds",
            "Time from forwarding a request to the app until its response headers arrived.",
            ["status_class"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._latency_by_class = {
            cls: self.upstream_latency.labels(status_class=cls)
            for cls in ("1xx", "2xx", "3xx", "4xx", "5xx")
        }
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
        self.logins = Counter(
            "gateway_logins",
            "Sign-in attempts by result.",
            ["result"],
            registry=self.registry,
        )

    def count(self, outcome: str) -> None:
        self.outcome[outcome].inc()

    def observe_upstream(self, status: int, seconds: float) -> None:
        cls = f"{min(max(status // 100, 1), 5)}xx"
        self._latency_by_class[cls].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""The metrics the proxy and the request context report, against prometheus_client's own."""

from __future__ import annotations

import random
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.ops.metrics import OUTCOMES, Metrics


def _reference_metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    """The request and latency metrics as prometheus_client's own Counter and Histogram."""
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(
        "gateway_requests",
        "Requests on the front listener by outcome.",
        ["outcome"],
        registry=registry,
    )
    for name in OUTCOMES:
        requests.labels(outcome=name)
    latency = Histogram(
        "gateway_upstream_latency_seconds",
        "Time from forwarding a request to the app until its response headers arrived.",
        ["status_class"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=registry,
    )
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        latency.labels(status_class=cls)
    return registry, requests, latency


def _without_created_times(text: str) -> str:
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 <time>", text)


@pytest.mark.parametrize("seed", range(5))
def test_request_and_latency_metrics_expose_what_prometheus_client_would(seed: int) -> None:
    metrics = Metrics(sessions=lambda: 2.0, statements=lambda: 7.0)
    registry, requests, latency = _reference_metrics()
    rng = random.Random(seed)
    for _ in range(500):
        outcome = rng.choice(OUTCOMES)
        metrics.count(outcome)
        requests.labels(outcome=outcome).inc()
        status = rng.choice([99, 101, 200, 204, 302, 404, 502, 504, 600])
        seconds = rng.choice([0.0, 0.001, 0.0010001, 0.0025, 0.5, 10.0, 10.5, rng.random()])
        metrics.observe_upstream(status, seconds)
        latency.labels(status_class=f"{min(max(status // 100, 1), 5)}xx").observe(seconds)
    ours = _without_created_times(metrics.render().decode())
    theirs = _without_created_times(generate_latest(registry).decode())
    assert ours.startswith(theirs)  # the same families, series, values and order; then the rest
    assert "gateway_sessions_active 2.0" in ours
    assert "gateway_store_statements 7.0" in ours
    assert 'gateway_logins_total{result="failed"}' not in ours  # no sign-in counted yet


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(KeyError):
        Metrics().count("no-such-outcome")

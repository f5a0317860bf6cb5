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


def _family(text: str, name: str) -> str:
    """The exposition lines of one metric family (HELP, TYPE and samples)."""
    lines = text.splitlines()
    heads = (f"# HELP {name} ", f"# HELP {name}_total ")  # a counter's HELP names its _total
    start = next(i for i, line in enumerate(lines) if line.startswith(heads))
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("# HELP ")), len(lines)
    )
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("seed", range(3))
def test_the_xero_listeners_metrics_expose_what_prometheus_client_would(seed: int) -> None:
    metrics = Metrics()
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(
        "gateway_xero_api_requests",
        metrics.xero_api_requests.documentation,
        ["outcome"],
        registry=registry,
    )
    for outcome in metrics.xero_api_requests.counts:
        requests.labels(outcome=outcome)
    latency = Histogram(
        "gateway_xero_api_upstream_seconds",
        metrics.xero_api_latency.documentation,
        ["status"],
        registry=registry,
    )
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        latency.labels(status=cls)
    waits = Histogram(
        "gateway_xero_wait_seconds",
        metrics.xero_waits.documentation,
        buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
        registry=registry,
    )
    rng = random.Random(seed)
    series = list(metrics.xero_api_latency.series.values())
    for _ in range(300):
        outcome = rng.choice(list(metrics.xero_api_requests.counts))
        metrics.xero_api_requests.inc(outcome)
        requests.labels(outcome=outcome).inc()
        index = rng.randrange(5)
        seconds = rng.choice([0.0, 0.005, 0.0050001, 0.75, 10.0, 11.0, rng.random()])
        series[index].observe(seconds)
        latency.labels(status=f"{index + 1}xx").observe(seconds)
        waited = rng.choice([0.0, 0.01, 0.5, 119.0, 121.0, rng.random() * 30])
        metrics.xero_waited(waited)
        waits.observe(waited)
    ours = _without_created_times(metrics.render().decode())
    theirs = _without_created_times(generate_latest(registry).decode())
    for name in (
        "gateway_xero_api_requests",
        "gateway_xero_api_upstream_seconds",
        "gateway_xero_wait_seconds",
    ):
        assert _family(ours, name) == _family(theirs, name)


def test_xero_calls_in_flight_and_waiting_are_read_from_the_governor_by_tenant_label() -> None:
    metrics = Metrics(xero_tenants=2)
    loads = [("t-1", 3, 0), ("t-2", 1, 4), ("t-3", 2, 1), ("t-4", 0, 5)]
    metrics.watch_xero_load(lambda: loads)
    text = metrics.render().decode()
    assert 'gateway_xero_in_flight{tenant="t-1"} 3.0' in text
    assert 'gateway_xero_queue_depth{tenant="t-2"} 4.0' in text
    # Tenants past the first two share the label "other": their counts are summed.
    assert 'gateway_xero_in_flight{tenant="other"} 2.0' in text
    assert 'gateway_xero_queue_depth{tenant="other"} 6.0' in text
    assert 'tenant="t-3"' not in text

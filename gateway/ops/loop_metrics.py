"""Metric families updated on every proxied request, counted with plain ints and floats.

prometheus_client takes a lock on every update, so that threads may share a metric. The
families here are only ever updated and read on the event loop's thread, so they need none:
an update is a dict lookup and an add. At scrape time they are exposed under the names,
types and series a prometheus_client Counter, Histogram or Gauge would give them.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Mapping

import prometheus_client.metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString


def created_series() -> bool:
    """Whether ``_created`` samples are exposed: prometheus_client's own switch
    (PROMETHEUS_DISABLE_CREATED_SERIES), honoured as its Counter and Histogram honour it."""
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


class Family(Collector):
    """A metric family whose samples are made at scrape time."""

    def __init__(
        self, name: str, documentation: str, kind: str, registry: CollectorRegistry | None
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.kind = kind
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        self.add_samples(metric, created_series())
        return [metric]

    def add_samples(self, metric: Metric, created: bool) -> None:
        raise NotImplementedError


class LoopCounter(Family):
    """A counter with one label whose values are all known up front; ``counts[value] += 1``
    counts (a value not given up front is a KeyError)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        values: Iterable[str],
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(name, documentation, "counter", registry)
        self.label = label
        self.counts = dict.fromkeys(values, 0)
        now = time.time()
        self._created = dict.fromkeys(self.counts, now)

    def inc(self, value: str) -> None:
        self.counts[value] += 1

    def add_samples(self, metric: Metric, created: bool) -> None:
        for value, count in self.counts.items():
            labels = {self.label: value}
            metric.add_sample(self.name + "_total", labels, float(count))
            if created:
                metric.add_sample(self.name + "_created", labels, self._created[value])


class Series:
    """One histogram series: per-bucket counts (not cumulative, +Inf last) and the sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class LoopHistogram(Family):
    """A histogram with at most one label whose values are all known up front (none: one
    series, ``series[""]``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        *,
        label: str = "",
        values: Iterable[str] = ("",),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.label = label
        bounds = tuple(float(b) for b in buckets)
        # The "le" label of each bucket, +Inf last, spelled as prometheus_client spells it.
        self._le = tuple(floatToGoString(b) for b in (*bounds, float("inf")))  # type: ignore[no-untyped-call]
        self.series = {value: Series(bounds) for value in values}
        super().__init__(name, documentation, "histogram", registry)

    def add_samples(self, metric: Metric, created: bool) -> None:
        name = self.name
        for value, series in self.series.items():
            labels = {self.label: value} if self.label else {}
            acc = 0.0
            for le, count in zip(self._le, series.counts, strict=True):
                acc += count
                metric.add_sample(name + "_bucket", {**labels, "le": le}, acc)
            metric.add_sample(name + "_count", labels, acc)
            metric.add_sample(name + "_sum", labels, series.sum)
            if created:
                metric.add_sample(name + "_created", labels, series.created)


class ReadGauge(Family):
    """A gauge with one label whose values are read at scrape time from ``read``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        read: Callable[[], Mapping[str, float]],
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.label = label
        self.read = read
        super().__init__(name, documentation, "gauge", registry)

    def add_samples(self, metric: Metric, created: bool) -> None:
        for value, reading in self.read().items():
            metric.add_sample(self.name, {self.label: value}, float(reading))

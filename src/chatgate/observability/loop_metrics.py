"""Counters and histograms that only the event loop's thread updates: plain numbers, no locks.

`prometheus_client`'s metrics take a lock on every update so that any thread may update them.
The API's request metrics are updated on every request, always from the event loop's thread,
and on the inbound hot path their locks and checks were a tenth of the app's own time per
webhook. These keep the same names, labels and exposition (they are collectors of the same
registry); each update is an index and an addition.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# How prometheus_client writes a bucket's bound (`1.0`, `0.0025`, `+Inf`); untyped upstream.
_bound_text = cast(Callable[[float], str], floatToGoString)


def _label_values(labelnames: Sequence[str], values: tuple[str, ...]) -> tuple[str, ...]:
    if len(values) != len(labelnames):
        raise ValueError(
            f"expected {len(labelnames)} label values ({', '.join(labelnames)}), got {len(values)}"
        )
    return values


class LoopCounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class LoopCounter:
    """A labelled counter (`name` ending in `_total`, as `prometheus_client.Counter` takes it)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], LoopCounterChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> LoopCounterChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[_label_values(self.labelnames, values)] = LoopCounterChild()
        return child

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class LoopHistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # one per bound (`le`), and +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # The first bound >= value: Prometheus buckets count observations less than or equal.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations up to it), +Inf last, as the exposition wants them."""
        total = 0
        found: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            found.append((_bound_text(bound), float(total)))
        return found


class LoopHistogram:
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or bounds[-1] == float("inf"):
            raise ValueError("histogram buckets must be finite, distinct and in increasing order")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = bounds
        self._children: dict[tuple[str, ...], LoopHistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> LoopHistogramChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[_label_values(self.labelnames, values)] = LoopHistogramChild(self.bounds)
        return child

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.cumulative(), child.sum)
        yield family

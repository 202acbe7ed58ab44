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
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# How prometheus_client writes a bucket's bound (`1.0`, `0.0025`, `+Inf`); untyped upstream.
_bound_text = cast(Callable[[float], str], floatToGoString)


_Child = TypeVar("_Child")


class _LoopMetric(Generic[_Child]):
    """A family's children by label values, and its registration as a collector."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        registry.register(self)  # a Collector: it has collect()

    def labels(self, *values: str) -> _Child:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"expected {len(self.labelnames)} label values ({', '.join(self.labelnames)}), "
                    f"got {len(values)}"
                )
            child = self._children[values] = self._new_child()
        return child

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            self._add(family, values, child)
        yield family

    def _new_child(self) -> _Child:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError

    def _add(self, family: Metric, values: tuple[str, ...], child: _Child) -> None:
        raise NotImplementedError


class LoopCounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class LoopCounter(_LoopMetric[LoopCounterChild]):
    """A labelled counter (`name` ending in `_total`, as `prometheus_client.Counter` takes it)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> LoopCounterChild:
        return LoopCounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: tuple[str, ...], child: LoopCounterChild) -> None:
        cast(CounterMetricFamily, family).add_metric(values, child.value)


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


class LoopHistogram(_LoopMetric[LoopHistogramChild]):
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
        self.bounds = bounds
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> LoopHistogramChild:
        return LoopHistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, values: tuple[str, ...], child: LoopHistogramChild) -> None:
        cast(HistogramMetricFamily, family).add_metric(values, child.cumulative(), child.sum)

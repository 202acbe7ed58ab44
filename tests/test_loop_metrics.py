"""The lock-free request metrics expose exactly what prometheus_client's own would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from chatgate.observability.loop_metrics import LoopCounter, LoopHistogram

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Edges on purpose: a value equal to a bound counts in it (`le`), beyond the last in +Inf only.
OBSERVED = [0.0, 0.0005, 0.001, 0.0010001, 0.0025, 0.7, 1, 9.99, 10, 10.5, 400.0]


def _exposition(registry: CollectorRegistry) -> list[str]:
    # prometheus_client also exports `_created` timestamps, which differ by nature.
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_histogram_and_counter_expose_what_prometheus_client_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    duration = LoopHistogram(
        "req_seconds", "Request time", ["method", "route"], buckets=BUCKETS, registry=ours
    )
    reference = Histogram(
        "req_seconds", "Request time", ["method", "route"], buckets=BUCKETS, registry=theirs
    )
    total = LoopCounter("req_total", "Requests", ["status"], registry=ours)
    reference_total = Counter("req_total", "Requests", ["status"], registry=theirs)
    for index, value in enumerate(OBSERVED):
        route = "/a" if index % 3 else "/b"
        duration.labels("POST", route).observe(value)
        reference.labels("POST", route).observe(value)
        total.labels(str(200 + index % 2)).inc()
        reference_total.labels(str(200 + index % 2)).inc()
    total.labels("500").inc(2.5)
    reference_total.labels("500").inc(2.5)

    exposed = _exposition(ours)
    assert exposed == _exposition(theirs)
    assert 'req_seconds_bucket{le="0.001",method="POST",route="/a"} 2.0' in exposed  # 0.0005 and 0.001
    assert 'req_seconds_bucket{le="0.001",method="POST",route="/b"} 1.0' in exposed  # 0.0, not 0.0010001
    assert 'req_seconds_bucket{le="+Inf",method="POST",route="/a"} 7.0' in exposed


def test_wrong_use_is_refused() -> None:
    registry = CollectorRegistry()
    duration = LoopHistogram("t_seconds", "t", ["method"], buckets=(0.1, 1), registry=registry)
    total = LoopCounter("t_total", "t", ["method"], registry=registry)
    with pytest.raises(ValueError, match="expected 1 label values"):
        duration.labels("GET", "/x")
    with pytest.raises(ValueError, match="only go up"):
        total.labels("GET").inc(-1)
    with pytest.raises(ValueError, match="increasing order"):
        LoopHistogram("u_seconds", "u", [], buckets=(1, 0.5), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        LoopCounter("t_total", "again", ["method"], registry=registry)

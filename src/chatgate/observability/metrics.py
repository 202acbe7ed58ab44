"""Prometheus metrics with the integration-service seed's names, labelled by route template."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chatgate.observability.loop_metrics import LoopCounter, LoopHistogram


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["method", "route", "status"]
        # Updated on every request, from the event loop's thread only: no locks (loop_metrics.py).
        self.request_duration = LoopHistogram(
            "api_request_duration_seconds",
            "Time spent answering API requests",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.request_total = LoopCounter(
            "api_request_total", "API requests answered", labels, registry=registry
        )
        self.request_error_total = LoopCounter(
            "api_request_error_total",
            "API requests answered with a 4xx or 5xx status",
            labels,
            registry=registry,
        )
        self.inbound_rejected_total = Counter(
            "inbound_auth_rejected_total",
            "Inbound provider requests rejected by their authenticity check",
            ["kind"],
            registry=registry,
        )
        self.rate_limited_total = Counter(
            "api_rate_limited_total", "Requests refused by the API rate limiter", ["limit"], registry=registry
        )


class DeliveryMetrics:
    """Tenant webhook deliveries, labelled by endpoint id (one series per endpoint)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempted = Counter(
            "webhook_deliveries_attempted_total", "Webhook delivery attempts", ["endpoint"], registry=registry
        )
        self.succeeded = Counter(
            "webhook_deliveries_succeeded_total",
            "Webhook deliveries that succeeded",
            ["endpoint"],
            registry=registry,
        )
        self.failed = Counter(
            "webhook_deliveries_failed_total",
            "Webhook delivery attempts that failed",
            ["endpoint"],
            registry=registry,
        )
        self.dead = Counter(
            "webhook_deliveries_dead_lettered_total",
            "Webhook deliveries that exhausted their retries",
            ["endpoint"],
            registry=registry,
        )
        self.latency = Histogram(
            "webhook_delivery_duration_seconds",
            "Time for the receiving endpoint to answer",
            ["endpoint"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
        )
        self.queue_depth = Gauge(
            "webhook_deliveries_open", "Deliveries waiting for a (re)try", ["endpoint"], registry=registry
        )


# Seed 001's metric names keep its `type` label (account | bot | channel) for Telegram.
_TELEGRAM_TYPES = {"telegram_bot": "bot", "telegram_user": "account", "telegram_channel": "channel"}


class SendMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "messages_sent_total", "Messages the provider accepted", ["provider"], registry=registry
        )
        self.failed = Counter(
            "messages_failed_total", "Messages that failed for good", ["provider", "code"], registry=registry
        )
        self.telegram_sent = Counter(
            "telegram_messages_sent_total", "Telegram messages sent", ["type"], registry=registry
        )
        self.telegram_error = Counter(
            "telegram_messages_error_total", "Telegram messages that failed", ["type"], registry=registry
        )

    def record_sent(self, provider: str) -> None:
        self.sent.labels(provider).inc()
        if provider in _TELEGRAM_TYPES:
            self.telegram_sent.labels(_TELEGRAM_TYPES[provider]).inc()

    def record_failed(self, provider: str, code: str) -> None:
        self.failed.labels(provider, code[:40]).inc()
        if provider in _TELEGRAM_TYPES:
            self.telegram_error.labels(_TELEGRAM_TYPES[provider]).inc()

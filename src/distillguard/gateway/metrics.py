"""Prometheus metrics of the gateway (one registry per gateway, so several can live in a process).

Names (all prefixed ``distillguard_gateway_``):

* ``requests_total{endpoint,status}``: answered requests;
* ``request_seconds{endpoint}``: latency histogram, from the first byte in to the last byte out;
* ``rejections_total{reason}``: refused requests by reason (passport reasons, ``rate_limited``,
  ``blocked``, ``reverify``, ``body_too_large``, ``upstream_error``, ``upstream_timeout``...);
* ``actions_total{action,source}``: policy actions taken;
* ``upstream_seconds``: time spent in the model;
* ``record_batch_size``: exchanges per store transaction;
* ``alerts_total{outcome}``: webhook alerts delivered or dead-lettered.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""Media type of the ``/metrics`` exposition."""

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class GatewayMetrics:
    """The gateway's metrics in their own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        p = "distillguard_gateway_"
        self.requests = Counter(
            p + "requests", "Answered requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            p + "request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            p + "rejections", "Refused requests by reason", ["reason"], registry=self.registry
        )
        self.actions = Counter(
            p + "actions", "Policy actions taken", ["action", "source"], registry=self.registry
        )
        self.upstream = Histogram(
            p + "upstream_seconds",
            "Time in the upstream model",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch = Histogram(
            p + "record_batch_size",
            "Exchanges per store transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.alerts = Counter(
            p + "alerts", "Webhook alerts by outcome", ["outcome"], registry=self.registry
        )

    def __repr__(self) -> str:
        return "GatewayMetrics()"

    def exposition(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

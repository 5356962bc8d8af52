"""Prometheus metrics of the edge, in their own registry so tests can run several edges; with
several edge processes (``server.py``), the sum of all of them from any one."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Set (before prometheus_client is imported) in each of several edge processes."""


class EdgeMetrics:
    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "streamproc_edge_requests",
            "Webhook requests by provider and outcome (the error code, or published/duplicate).",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "streamproc_edge_publish_seconds",
            "Time from handing an event to Kafka until the broker acknowledged it (acks=all).",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def render(self) -> bytes:
        if MULTIPROCESS_DIR in os.environ:
            every_process = CollectorRegistry()
            MultiProcessCollector(every_process)
            return generate_latest(every_process)
        return generate_latest(self.registry)

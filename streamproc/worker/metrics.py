"""Prometheus metrics of a worker, served at ``/metrics`` on its web port.

Read at scrape time from the counters the pipeline and the sweeper keep, so
the hot path does no metric work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class WorkerCollector(Collector):
    def __init__(
        self,
        pipeline_counts: Mapping[str, int],
        records_swept: Callable[[], int],
        consumer_lag: Callable[[], Mapping[tuple[str, int], int]] = dict,
    ) -> None:
        self.pipeline_counts = pipeline_counts
        self.records_swept = records_swept
        self.consumer_lag = consumer_lag

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "streamproc_worker_events",
            "What the worker did with each record: folded, duplicates, redelivered, "
            "rekeyed, join.routed, join.linked, join.held, join.released, join.start_failed, "
            "stalled, downloaded, fetch.retried (waiting in a retry topic), "
            "fetch.retry_resent (sent back by the relay), dead_lettered.<stage>, "
            "skipped.<provider>.<type>.",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.pipeline_counts.items()):
            events.add_metric([outcome], count)
        yield events
        yield CounterMetricFamily(
            "streamproc_worker_records_swept",
            "Records the engine committed past without delivering, found and forwarded "
            "again by the safety net (worker/gaps.py). Stays 0 unless Faust drops a record.",
            value=self.records_swept(),
        )
        lag = GaugeMetricFamily(
            "streamproc_worker_consumer_lag",
            "Records between the group's committed offset and the log end, per partition this "
            "worker owns (the end as the last fetch response reported it).",
            labels=["topic", "partition"],
        )
        for (topic, partition), records in sorted(self.consumer_lag().items()):
            lag.add_metric([topic, str(partition)], records)
        yield lag


class WorkerMetrics:
    # aiohttp (Faust's web server) refuses a charset inside content_type; it adds utf-8
    content_type = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")

    def __init__(self, collector: WorkerCollector) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)

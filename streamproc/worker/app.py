"""The Faust application: topics, the recordings table, and three thin agents.

Agents only move bytes between topics and call the pipeline; all decisions live in
``pipeline.py`` and ``core/fold.py``. ``build_app`` reads as the wiring: the Faust app, its
topics and tables, the pipeline, the sweeper, the agents of this worker's role, metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
from aiokafka.errors import KafkaError

from streamproc.core.fold import SourcePosition
from streamproc.fetch.fetcher import Fetcher
from streamproc.fetch.retries import RetryRelay
from streamproc.fetch.window import SlidingWindow
from streamproc.kafka.partitions import KeyHashPartitioner
from streamproc.providers import enabled_providers
from streamproc.providers.decode import header_dict
from streamproc.settings import Settings
from streamproc.worker import engine
from streamproc.worker.batch_table import BatchTable, handling
from streamproc.worker.commit_gate import DeferringSender, deferring, send_deferred
from streamproc.worker.gaps import SkippedRecordSweeper
from streamproc.worker.metrics import WorkerCollector, WorkerMetrics
from streamproc.worker.pipeline import Pipeline, forwarding_headers
from streamproc.worker.senders import ProducerSender
from streamproc.worker.topics import (
    fetch_retry_group,
    fetch_retry_topics,
    group_id,
    instances_topic,
    rekeyed_topic,
)

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 10.0
SWEEP_INTERVAL_S = 2.0
FOLD_BATCH_WAIT_S = 0.02
"""A batch ends at this many events or after this wait: the latency a quiet stream adds."""


def _bytes_topic(app: faust.App, name: str, partitions: int) -> Any:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def consumer_lag(app: faust.App) -> dict[tuple[str, int], int]:
    """Log end minus committed offset for each partition Faust has both figures for."""
    monitor = app.monitor
    ends, committed = monitor.tp_end_offsets, monitor.tp_committed_offsets
    return {
        (tp.topic, tp.partition): max(ends[tp] - committed[tp], 0)
        for tp in ends.keys() & committed.keys()
    }


@dataclass(frozen=True, slots=True)
class WorkerTopics:
    """The topics the agents read (the derived ones are written through senders)."""

    raw: Any
    rekeyed: Any
    fetch_requests: Any
    instances: Any


def build_app(settings: Settings, partitions: int) -> faust.App:
    """A Faust app whose topics and table all have ``partitions`` partitions (the raw topic's),
    with the agents of ``settings.worker_role``."""
    folds = settings.worker_role in ("all", "fold")
    app = _faust_app(settings, partitions)
    topics = WorkerTopics(
        raw=_bytes_topic(app, settings.raw_topic, partitions),
        rekeyed=_bytes_topic(app, rekeyed_topic(settings), partitions),
        fetch_requests=_bytes_topic(app, settings.fetch_topic, partitions),
        instances=_bytes_topic(app, instances_topic(settings), partitions),
    )
    table: Any = {}  # a fetch worker folds nothing: no tables, no changelogs to recover
    instance_table: Any = {}
    if folds:
        table = _bytes_table(app, "recordings", partitions)
        instance_table = _bytes_table(app, "instances", partitions)
    exactly_once = settings.processing_guarantee == "exactly_once"
    batched = BatchTable(table, track_changelog=exactly_once and folds)
    batched_instances = BatchTable(instance_table, track_changelog=exactly_once and folds)
    pipeline = _pipeline(app, settings, partitions, batched, batched_instances)
    sweeper = _sweeper(app, settings, topics, pipeline)
    if folds:
        _fold_agents(app, settings, topics, pipeline, sweeper, batched, batched_instances)
    if settings.worker_role in ("all", "fetch"):
        _fetch_agent(app, settings, topics, pipeline, sweeper)
    _observability(app, pipeline, sweeper)
    return app


def _faust_app(settings: Settings, partitions: int) -> engine.App:
    """Faust with the engine's corrections, configured from the settings."""
    brokers = [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")]
    return engine.App(
        group_id(settings),
        broker=brokers,
        store=settings.table_store,
        datadir=settings.data_dir,
        autodiscover=False,
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication_factor,
        processing_guarantee=settings.processing_guarantee,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_commit_interval=settings.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        direct_delivery=settings.direct_delivery,
        producer_acks=-1,
        producer_partitioner=KeyHashPartitioner(),
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        key_serializer="raw",
        value_serializer="raw",
    )


def _bytes_table(app: faust.App, name: str, partitions: int) -> Any:
    return app.Table(name, default=None, partitions=partitions, key_type=bytes, value_type=bytes)


def _pipeline(
    app: faust.App,
    settings: Settings,
    partitions: int,
    table: BatchTable,
    instance_table: BatchTable,
) -> Pipeline:
    """The derivation, sending to the derived topics (exactly-once: in the transaction of
    the record being handled, a download's messages deferred to its acknowledgement)."""

    def sender(name: str) -> Any:
        if settings.processing_guarantee == "exactly_once":
            return DeferringSender(ProducerSender(app, name))
        return ProducerSender(app, name)

    return Pipeline(
        table=table,
        state=sender(settings.state_topic),
        lifecycle=sender(settings.lifecycle_topic),
        fetch_requests=sender(settings.fetch_topic),
        downloads=sender(settings.downloads_topic),
        dead_letters=sender(settings.dlq_topic),
        rekeyed=sender(rekeyed_topic(settings)),
        instances=sender(instances_topic(settings)),
        instance_table=instance_table,
        partitions=partitions,
        max_event_bytes=settings.max_body_bytes,
        providers=enabled_providers(settings),
        stall_after_s=settings.stall_after_s,
        fetch_retries=[sender(topic) for topic in fetch_retry_topics(settings)],
    )


def _sweeper(
    app: faust.App, settings: Settings, topics: WorkerTopics, pipeline: Pipeline
) -> SkippedRecordSweeper:
    """The skipped-record sweeper (``gaps.py``), wired to the group's assignments."""

    async def forward_raw(record: Any) -> None:
        headers = {**header_dict(record.headers), **forwarding_headers(record)}
        await topics.rekeyed.send(key=record.key, value=record.value, headers=list(headers.items()))

    async def forward_fetch(record: Any) -> None:
        await topics.fetch_requests.send(key=record.key, value=record.value)

    async def forward_instance(record: Any) -> None:
        headers = header_dict(record.headers)
        await topics.instances.send(
            key=record.key, value=record.value, headers=list(headers.items())
        )

    sweeper = SkippedRecordSweeper(
        settings.kafka_bootstrap,
        group_id(settings),
        {
            topics.raw.get_topic_name(): forward_raw,
            topics.rekeyed.get_topic_name(): forward_raw,
            topics.fetch_requests.get_topic_name(): forward_fetch,
            topics.instances.get_topic_name(): forward_instance,
        },
        own_commits=lambda: app.consumer._committed_offset,
    )
    app.seek_listeners.append(sweeper.sought)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        await sweeper.assigned(assigned)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        sweeper.revoked(revoked)
        pipeline.stalls.forget({tp.partition for tp in revoked})

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, **_: Any) -> None:
        await sweeper.stop()

    @app.timer(SWEEP_INTERVAL_S)
    async def sweep_skipped_records() -> None:
        try:
            await sweeper.sweep()
        except KafkaError as exc:
            log.warning("could not check for skipped records: %r", exc)

    return sweeper


def _fold_agents(
    app: faust.App,
    settings: Settings,
    topics: WorkerTopics,
    pipeline: Pipeline,
    sweeper: SkippedRecordSweeper,
    batched: BatchTable,
    batched_instances: BatchTable,
) -> None:
    """The raw and re-keyed topics folded a batch at a time, and the instances joined a
    batch at a time."""

    async def handle_one(handle: Callable[..., Awaitable[None]], message: Any) -> None:
        """One record through ``handle``, then marked handled for the sweeper."""
        await handle(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            header_dict(message.headers),
        )
        sweeper.handled(message.topic, message.partition, message.offset)

    async def consume_batches(
        stream: Any, handle: Callable[..., Awaitable[None]], table: BatchTable
    ) -> None:
        """A batch at a time: a batch's outputs go out in few produce requests, and
        ``table`` is written once per key before Faust acks the batch."""
        async for events in stream.take_events(settings.fold_batch, within=FOLD_BATCH_WAIT_S):
            async with app.commit_gate.handling():  # exactly-once: no commit mid-batch
                for event in events:
                    with handling(event):
                        await handle_one(handle, event.message)
                table.flush()
                await table.changelog_sent(app.producer.buffer._crashed)  # exactly-once

    @app.agent(topics.raw, name="fold-raw")
    async def fold_raw(stream: Any) -> None:
        await consume_batches(stream, pipeline.handle_raw, batched)

    @app.agent(topics.rekeyed, name="fold-rekeyed")
    async def fold_rekeyed(stream: Any) -> None:
        await consume_batches(stream, partial(pipeline.handle_raw, rekeyed=True), batched)

    @app.agent(topics.instances, name="join-instances")
    async def join_instances(stream: Any) -> None:
        """Daily errors that name only their instance, joined to their recording."""
        await consume_batches(stream, pipeline.handle_instance, batched_instances)


def _fetch_agent(
    app: faust.App,
    settings: Settings,
    topics: WorkerTopics,
    pipeline: Pipeline,
    sweeper: SkippedRecordSweeper,
) -> None:
    """Downloads of the fetch-requests topic, ``fetch_concurrency`` at a time."""

    async def fetch_one(fetcher: Fetcher, message: Any) -> None:
        await pipeline.handle_fetch_request(
            fetcher,
            SourcePosition(message.topic, message.partition, message.offset),
            message.key,
            message.value,
            now=time.time(),
            headers=header_dict(message.headers),
        )
        sweeper.handled(message.topic, message.partition, message.offset)

    @app.agent(topics.fetch_requests, name="fetch")
    async def fetch(stream: Any) -> None:
        """Up to ``fetch_concurrency`` downloads at a time, each acked once it and every
        request before it on its partition ended (``fetch/window.py``)."""
        gate = app.commit_gate

        async def download(fetcher: Fetcher, event: Any) -> list[Any]:
            """Exactly-once: the request's messages wait for its acknowledgement."""
            if not gate.enabled:
                await fetch_one(fetcher, event.message)
                return []
            with deferring() as pending:
                await fetch_one(fetcher, event.message)
            return pending

        async def finish(event: Any, pending: list[Any]) -> None:
            if event.message.generation_id != app.consumer_generation_id:
                return  # its partition was rebalanced: read again from the last commit
            async with gate.handling():
                await send_deferred(pending)
                event.ack()

        async with Fetcher(settings) as fetcher:
            window = SlidingWindow(
                settings.fetch_concurrency,
                handle=partial(download, fetcher),
                finished=finish,
                lane=lambda event: event.message.tp,
            )
            await window.run(stream.noack().events())

    if settings.fetch_retry_delays_s:
        _retry_relay(app, settings, pipeline)


def _retry_relay(app: faust.App, settings: Settings, pipeline: Pipeline) -> None:
    """Waiting fetch requests back to the fetch topic when due (``fetch/retries.py``)."""
    topics = fetch_retry_topics(settings)
    relay = RetryRelay(
        settings.kafka_bootstrap,
        fetch_retry_group(settings),
        dict(zip(topics, settings.fetch_retry_delays_s, strict=True)),
        settings.fetch_topic,
        pipeline.counts,
        transactional=settings.processing_guarantee == "exactly_once",
    )

    @app.task
    async def relay_fetch_retries() -> None:
        await relay.run()

    @app.on_before_shutdown.connect
    async def stop_relay(sender: Any, **_: Any) -> None:
        await relay.stop()


def _observability(app: faust.App, pipeline: Pipeline, sweeper: SkippedRecordSweeper) -> None:
    """``/metrics`` on the worker's web port, and a progress line when something happened."""
    metrics = WorkerMetrics(
        WorkerCollector(
            pipeline.counts,
            records_swept=lambda: sweeper.forwarded,
            consumer_lag=lambda: consumer_lag(app),
        )
    )

    @app.page("/metrics")
    async def serve_metrics(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type=metrics.content_type)

    last_reported: dict[str, int] = {}

    @app.timer(PROGRESS_INTERVAL_S)
    async def report_progress() -> None:
        """A line when something happened since the last one; an idle worker stays quiet."""
        if pipeline.counts and pipeline.counts != last_reported:
            last_reported.clear()
            last_reported.update(pipeline.counts)
            summary = ", ".join(
                f"{name}={count}" for name, count in sorted(pipeline.counts.items())
            )
            log.info("progress: %s", summary)

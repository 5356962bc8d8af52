"""The Faust application: topics, the recordings table, and three thin agents.

Agents only move bytes between topics and call the pipeline; all decisions live in
``pipeline.py`` and ``fold.py``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from streamproc.fetch.fetcher import Fetcher
from streamproc.fold import SourcePosition
from streamproc.settings import Settings
from streamproc.worker.pipeline import Pipeline, header_dict
from streamproc.worker.topics import rekeyed_topic

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 10.0


def _bytes_topic(app: faust.App, name: str, partitions: int) -> Any:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def build_app(settings: Settings, partitions: int) -> faust.App:
    """A Faust app whose topics and table all have ``partitions`` partitions (the raw topic's)."""
    brokers = [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")]
    app = faust.App(
        settings.app_id,
        broker=brokers,
        store=settings.table_store,
        datadir=settings.data_dir,
        autodiscover=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        processing_guarantee=settings.processing_guarantee,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_commit_interval=settings.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        key_serializer="raw",
        value_serializer="raw",
    )
    raw = _bytes_topic(app, settings.raw_topic, partitions)
    rekeyed = _bytes_topic(app, rekeyed_topic(settings), partitions)
    fetch_requests = _bytes_topic(app, settings.fetch_topic, partitions)
    table = app.Table(
        "recordings", default=None, partitions=partitions, key_type=bytes, value_type=bytes
    )
    pipeline = Pipeline(
        table=table,
        state=_bytes_topic(app, settings.state_topic, partitions),
        lifecycle=_bytes_topic(app, settings.lifecycle_topic, partitions),
        fetch_requests=fetch_requests,
        downloads=_bytes_topic(app, settings.downloads_topic, partitions),
        dead_letters=_bytes_topic(app, settings.dlq_topic, partitions),
        rekeyed=rekeyed,
    )

    async def fold_records(stream: Any, is_rekeyed: bool) -> None:
        async for event in stream.events():
            message = event.message
            await pipeline.handle_raw(
                message.topic,
                message.partition,
                message.offset,
                message.key,
                message.value,
                header_dict(message.headers),
                rekeyed=is_rekeyed,
            )

    @app.agent(raw, name="fold-raw")
    async def fold_raw(stream: Any) -> None:
        await fold_records(stream, is_rekeyed=False)

    @app.agent(rekeyed, name="fold-rekeyed")
    async def fold_rekeyed(stream: Any) -> None:
        await fold_records(stream, is_rekeyed=True)

    @app.agent(fetch_requests, name="fetch", concurrency=settings.fetch_concurrency)
    async def fetch(stream: Any) -> None:
        async with Fetcher(settings) as fetcher:
            async for event in stream.events():
                message = event.message
                await pipeline.handle_fetch_request(
                    fetcher,
                    SourcePosition(message.topic, message.partition, message.offset),
                    message.key,
                    message.value,
                    now=time.time(),
                )

    @app.timer(PROGRESS_INTERVAL_S)
    async def report_progress() -> None:
        if pipeline.counts:
            summary = ", ".join(
                f"{name}={count}" for name, count in sorted(pipeline.counts.items())
            )
            log.info("progress: %s", summary)

    app.pipeline = pipeline  # type: ignore[attr-defined]
    return app

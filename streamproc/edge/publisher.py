"""Publishes raw events to Kafka with acks=all and answers only once the broker has them.

The producer is idempotent where the broker can do it (``STREAMPROC_IDEMPOTENCE=auto``):
on Kafka a retried produce request after a leader change is written once, not twice. The
embedded Tansu answers InitProducerId with UnknownError
(``tests/integration/test_broker_facts.py::test_idempotent_and_transactional_producers_work_on_kafka_only``),
so ``auto`` falls back to a plain producer there; the worker de-duplicates by event id anyway.

The producer is started lazily, and replaced after any failed write: an edge that came up
while the broker was down, or saw it go away, serves again as soon as the broker is back,
without a restart. Replacing it also re-creates the raw topic, which matters on the embedded
broker: after a restart of its in-memory mode, Tansu acknowledges writes to a topic it no
longer has and drops them, so a producer must not keep writing on stale metadata.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownError

from streamproc.edge.errors import BrokerUnavailable
from streamproc.edge.metrics import EdgeMetrics
from streamproc.kafka.partitions import KeyHashPartitioner
from streamproc.kafka.topics import Replication, TopicSpec, ensure_topics
from streamproc.settings import Settings

log = logging.getLogger(__name__)
HEADER_OVERHEAD = 64 * 1024
BATCH_BYTES = 512 * 1024
"""Room in one partition's batch for every webhook in flight (~1 KB each), under Kafka's
default 1 MB ``message.max.bytes``. With aiokafka's 16 KB default, 64 concurrent webhooks filled a
batch every round trip (one produce request in flight per broker, one batch per partition in it);
the publishes that did not fit waited for the batch to drain and raced each other for the next, and
the unlucky ones waited 0.5-3.4 s, some until the 5 s publish timeout: 503s under plain load
(docs/notes/performance-history.md, "What stood between each figure and its target")."""


class RawEventPublisher:
    def __init__(self, settings: Settings, metrics: EdgeMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._start_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._idempotent = settings.idempotence != "off"

    async def start(self) -> None:
        """Try to connect now; a broker that is down is not fatal (requests get 503)."""
        try:
            await self._ensure_producer()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable at start-up (%s); will retry on demand", exc)

    async def stop(self) -> None:
        """Flush and close the producer; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _discard(self, producer: AIOKafkaProducer) -> None:
        """Close a failed producer in the background; the next publish starts a fresh one."""
        if self._producer is producer:
            self._producer = None
            task = asyncio.create_task(producer.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _unavailable(self, why: str) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"Kafka at {self._settings.kafka_bootstrap} {why}; retry later",
            self._settings.retry_after_s,
        )

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._start_lock:
            if self._producer is not None:
                return self._producer
            settings = self._settings
            producer = None
            try:
                async with asyncio.timeout(settings.publish_timeout_s):
                    producer = await self._started_producer()
                    await ensure_topics(
                        settings.kafka_bootstrap,
                        [TopicSpec(settings.raw_topic, settings.raw_topic_partitions)],
                        timeout_s=settings.publish_timeout_s,
                        replication=Replication.of(settings),
                    )
            except (KafkaError, OSError, TimeoutError) as exc:
                if producer is not None:
                    await producer.stop()
                raise self._unavailable(f"is not reachable ({exc!r})") from exc
            self._producer = producer
            return producer

    async def _started_producer(self) -> AIOKafkaProducer:
        """A started producer: idempotent unless the setting or the broker says otherwise."""
        settings = self._settings
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=self._idempotent,
                request_timeout_ms=int(settings.publish_timeout_s * 1000),
                max_request_size=settings.max_body_bytes + HEADER_OVERHEAD,
                max_batch_size=BATCH_BYTES,
                client_id="streamproc-edge",
                partitioner=KeyHashPartitioner(),
            )
            try:
                await producer.start()
                return producer
            except UnknownError:
                await producer.stop()
                if not (self._idempotent and settings.idempotence == "auto"):
                    raise
                log.warning(
                    "the broker at %s cannot give an idempotent producer an id (InitProducerId "
                    "failed, as on the embedded Tansu); publishing without idempotence",
                    settings.kafka_bootstrap,
                )
                self._idempotent = False
            except BaseException:
                await producer.stop()
                raise

    async def publish(self, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        """Return once the broker acknowledged the write; raise BrokerUnavailable otherwise.

        The producer's request timeout equals the publish timeout, so a message that was not
        acknowledged in time expires in the producer instead of being written later.
        """
        producer = await self._ensure_producer()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                await producer.send_and_wait(
                    self._settings.raw_topic, value=value, key=key, headers=list(headers)
                )
        except (KafkaError, TimeoutError) as exc:
            self._discard(producer)
            raise self._unavailable(f"did not acknowledge the write ({exc!r})") from exc
        self._metrics.publish_latency.observe(time.perf_counter() - started)

    async def ready(self) -> bool:
        """True when the broker answers a metadata request now."""
        try:
            producer = await self._ensure_producer()
            async with asyncio.timeout(self._settings.publish_timeout_s):
                await producer.client.fetch_all_metadata()
        except (BrokerUnavailable, KafkaError, TimeoutError):
            return False
        return True

"""Downloads tried again later, without holding up the fetch topic.

A download that failed in a way that may heal (``FetchError.may_heal``: S3 5xx, timeouts, an
object missing or forbidden) is not dead-lettered at once: the worker writes its fetch
request to the retry topic of its attempt (``worker/topics.fetch_retry_topics``, one topic
per wait in ``STREAMPROC_FETCH_RETRY_DELAYS_S``) with its next attempt and every reason so
far in headers, and goes on with the requests behind it. The relay here sends each waiting
request back to the fetch topic once the wait after its retry record's timestamp is over;
after the last wait a failure is dead-lettered with all its reasons.

The relay is a plain consumer group (``<app id>-fetch-retry``): a partition whose first
record is not due yet is paused and sought back to it until it is, so a waiting request
blocks only the ones behind it in the same topic, which wait as long or longer. It commits a
record once its resend was acknowledged: a crash sends at most that request again, and the
fetcher finds the files it already stored. The waits are in the log, so they survive
restarts.

With exactly-once (``transactional``) each resend and its record's offset commit in one
transaction, by a producer whose transactional id belongs to the record's partition: a
relay that died between the two leaves an open transaction that the partition's next owner
aborts when it starts its producer, so the request is not sent twice. The relay reads only
committed records either way (the fetch agent writes the retry topics in its transactions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streamproc.kafka.coordinator import raise_offset_fetch_errors
from streamproc.kafka.partitions import KeyHashPartitioner

log = logging.getLogger(__name__)
REASONS_HEADER = "streamproc-fetch-reasons"
"""On a waiting fetch request: why each earlier attempt failed (a JSON list)."""
POLL_MS = 1000


def earlier_reasons(headers: Mapping[str, bytes]) -> list[str]:
    try:
        reasons = orjson.loads(headers.get(REASONS_HEADER, b"[]"))
    except orjson.JSONDecodeError:
        return []
    return [str(reason) for reason in reasons] if isinstance(reasons, list) else []


class RetryRelay:
    """Sends each record of ``delays`` (topic -> seconds) to ``target`` once it is due."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        delays: Mapping[str, float],
        target: str,
        counts: Counter[str],
        clock: Callable[[], float] = time.time,
        transactional: bool = False,
    ) -> None:
        self.bootstrap = bootstrap
        self.transactional = transactional
        self.group_id = group_id
        self.delays = dict(delays)
        self.target = target
        self.counts = counts
        self.clock = clock
        self.paused: dict[TopicPartition, float] = {}
        """Partitions whose first record is not due yet, and when it is."""
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Until ``stop``; a Kafka error is logged and the relay starts again."""
        while not self._stopping.is_set():
            try:
                await self._relay()
            except KafkaError as exc:
                log.warning("fetch retry relay: %r; starting again in 1 s", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._stopping.set()

    async def _relay(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.delays,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        producers = _Producers(self.bootstrap, self.group_id, self.transactional)
        await consumer.start()
        raise_offset_fetch_errors(consumer)
        try:
            while not self._stopping.is_set():
                self._resume_due(consumer)
                batch = await consumer.getmany(timeout_ms=POLL_MS)
                for tp, records in batch.items():
                    await self._handle(consumer, await producers.for_partition(tp), tp, records)
        finally:
            self.paused.clear()
            await producers.stop()
            await consumer.stop()

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = self.clock()
        for tp, due in list(self.paused.items()):
            if due <= now:
                del self.paused[tp]
                if tp in consumer.assignment():
                    consumer.resume(tp)

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        records: list,
    ) -> None:
        """Resend the due records in order; at the first one not due, wait for it."""
        for record in records:
            due = record.timestamp / 1000 + self.delays[tp.topic]
            if due > self.clock():
                consumer.seek(tp, record.offset)
                consumer.pause(tp)
                self.paused[tp] = due
                return
            resend = {"key": record.key, "headers": list(record.headers or [])}
            if self.transactional:
                async with producer.transaction():
                    await producer.send(self.target, record.value, **resend)
                    await producer.send_offsets_to_transaction(
                        {tp: record.offset + 1}, self.group_id
                    )
            else:
                await producer.send_and_wait(self.target, record.value, **resend)
                await consumer.commit({tp: record.offset + 1})
            self.counts["fetch.retry_resent"] += 1


class _Producers:
    """One plain producer; or, for transactions, one per partition the relay has read, its
    transactional id the partition's (a new owner's producer fences the old one's)."""

    def __init__(self, bootstrap: str, group_id: str, transactional: bool) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.transactional = transactional
        self.started: dict[TopicPartition | None, AIOKafkaProducer] = {}

    async def for_partition(self, tp: TopicPartition) -> AIOKafkaProducer:
        key = tp if self.transactional else None
        producer = self.started.get(key)
        if producer is None:
            transactional_id = f"{self.group_id}-{tp.topic}-{tp.partition}" if key else None
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                partitioner=KeyHashPartitioner(),
                transactional_id=transactional_id,
            )
            await producer.start()
            self.started[key] = producer
        return producer

    async def stop(self) -> None:
        for producer in self.started.values():
            await producer.stop()
        self.started.clear()

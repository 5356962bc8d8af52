"""A safety net: finds records an engine committed past without delivering, and sends them
round again. Expected to stay idle.

faust-streaming 0.15 skipped records after a rebalance (it resumed stream partitions before
seeking them to their committed offsets; ``docs/durability.md``); ``worker/engine.py`` fixes
the order. This sweeper stays for engines we have not measured: it keeps, per partition, the
lowest offset not yet handled (from the committed offset at assignment) and the handled
offsets above it, and every few seconds compares that with the group's committed offset. A
record committed past but never handled is read again with a plain consumer and forwarded
through a topic the agents consume (raw records via the re-keyed topic, fetch requests to the
fetch topic), counted in ``forwarded`` (``streamproc_worker_records_swept_total``) and logged
as a warning. The chaos suite fails if it forwards anything. The fold and the fetcher are
idempotent, so a record handled twice is harmless; a record never handled is not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 30.0
Forward = Callable[[ConsumerRecord], Awaitable[None]]


class PartitionProgress:
    """Offsets handled on one partition: everything below ``low``, plus ``above``."""

    def __init__(self, low: int | None = None) -> None:
        self.low = low
        self.above: set[int] = set()

    def add(self, offset: int) -> None:
        if self.low is None or offset >= self.low:
            self.above.add(offset)
            self._advance()

    def start_at(self, low: int) -> None:
        if self.low is None:
            self.low = low
            self.above = {o for o in self.above if o >= low}
            self._advance()

    def _advance(self) -> None:
        if self.low is None:
            return
        while self.low in self.above:
            self.above.discard(self.low)
            self.low += 1

    def missing(self, end: int) -> list[int]:
        """Offsets in ``[low, end)`` that were not handled."""
        if self.low is None:
            return []
        return [o for o in range(self.low, end) if o not in self.above]

    def skip_to(self, end: int) -> None:
        if self.low is not None and end > self.low:
            self.low = end
            self.above = {o for o in self.above if o >= end}
            self._advance()


class SkippedRecordSweeper:
    def __init__(self, bootstrap: str, group_id: str, forwards: dict[str, Forward]) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.forwards = forwards
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self.forwarded = 0

    def handled(self, topic: str, partition: int, offset: int) -> None:
        tp = TopicPartition(topic, partition)
        self._progress.setdefault(tp, PartitionProgress()).add(offset)

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group_id,
                enable_auto_commit=False,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def resuming_at(self, positions: Mapping[TopicPartition, int | None]) -> None:
        """Track each stream partition from the group's committed offset, read when the engine
        resumes after a rebalance, and warn where the engine resumes elsewhere.

        Right after a restart, Faust was seen to resume fetch-request partitions at their log
        end although the group had no committed offset for them (docs/durability.md): the
        requests in between were never handled, and tracking from the committed offset is what
        finds and forwards them.
        """
        consumer = await self._started()
        for faust_tp, position in positions.items():
            tp = TopicPartition(faust_tp.topic, faust_tp.partition)
            if tp.topic not in self.forwards:
                continue
            committed = await consumer.committed(tp)
            start = committed if committed is not None else 0
            if position is not None and position != start:
                log.warning(
                    "%s:%d: the engine resumes at %d but the group's committed offset is %s",
                    tp.topic,
                    tp.partition,
                    position,
                    committed,
                )
            log.info("tracking %s:%d from offset %d", tp.topic, tp.partition, start)
            self._progress.setdefault(tp, PartitionProgress()).start_at(start)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._progress.pop(TopicPartition(tp.topic, tp.partition), None)

    async def sweep(self) -> int:
        """Forward every record committed past but never handled; return how many.

        An offset with no record (a durable Tansu restart can leave some, see
        docs/durability.md) is not a lost record: it is noted, not forwarded.
        """
        consumer = await self._started()
        forwarded = 0
        for tp, progress in list(self._progress.items()):
            committed = await consumer.committed(tp)
            if committed is None:
                continue
            missing = set(progress.missing(committed))
            if missing:
                records = await self._read(tp, min(missing), committed)
                lost = [record for record in records if record.offset in missing]
                if lost:
                    log.warning(
                        "%s:%d: %d record(s) below the committed offset %d were never handled "
                        "(offsets %s); forwarding them again",
                        tp.topic,
                        tp.partition,
                        len(lost),
                        committed,
                        [record.offset for record in lost][:20],
                    )
                for record in lost:
                    await self.forwards[tp.topic](record)
                    forwarded += 1
                if len(lost) < len(missing):
                    log.info(
                        "%s:%d: no record at %d offset(s) below %d (a gap in the log)",
                        tp.topic,
                        tp.partition,
                        len(missing) - len(lost),
                        committed,
                    )
            progress.skip_to(committed)
        self.forwarded += forwarded
        return forwarded

    async def _read(self, tp: TopicPartition, start: int, end: int) -> list[ConsumerRecord]:
        """Every record in ``[start, end)``; raises rather than answer a partial list."""
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign([tp])
            reader.seek(tp, start)
            records: list[ConsumerRecord] = []
            deadline = time.monotonic() + READ_TIMEOUT_S
            while await reader.position(tp) < end:
                if time.monotonic() > deadline:
                    raise KafkaTimeoutError(f"could not read {tp} up to {end}")
                batch = await reader.getmany(tp, timeout_ms=1000)
                records.extend(r for r in batch.get(tp, []) if r.offset < end)
            return records
        finally:
            await reader.stop()

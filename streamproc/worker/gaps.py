"""A safety net: finds records an engine committed past without delivering, and sends them
round again. With the six known defects fixed at their source (``worker/engine.py``,
``docs/notes/durability.md``) it is expected to stay idle, and the restart and chaos tests fail if
it forwards anything; it stays as a counted guard against a new engine defect.

The sweeper keeps, per partition, the lowest offset not yet handled (from the committed
offset at assignment) and the handled offsets above it, and every few seconds compares that
with the offset this engine committed (``own_commits``), not the group's: a member that owned
the partition before can commit late, after this one sought it (the embedded broker takes
commits from an old generation), and what it committed it handled itself; counting those
failed the chaos suite once (12 "never handled" records, all done by the member leaving).
A record committed past but never handled is read again
with a plain consumer and forwarded through a topic the agents consume (raw records via the
re-keyed topic, fetch requests to the fetch topic), counted in ``forwarded``
(``streamproc_worker_records_swept_total``) and logged as a warning. The fold and the
fetcher are idempotent, so a record handled twice is harmless; a record never handled is not.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from streamproc.kafka.coordinator import start_group_reader
from streamproc.kafka.reading import ReadReport, read_to_end

log = logging.getLogger(__name__)
HISTORY = 8
READ_TIMEOUT_S = 30.0
"""Seconds without a record below the end before a read gives up (and the sweep fails)."""
Forward = Callable[[ConsumerRecord], Awaitable[None]]


class PartitionProgress:
    """Offsets handled on one partition: everything below ``low``, plus ``above``."""

    def __init__(self, low: int | None = None) -> None:
        self.low = low
        self.above: set[int] = set()
        self.history: deque[str] = deque(maxlen=HISTORY)
        """How ``low`` was set and moved (assignments, seeks), for the warning that names a
        record never handled: the evidence a false positive or a new defect needs."""

    def add(self, offset: int) -> None:
        if self.low is None or offset >= self.low:
            self.above.add(offset)
            self._advance()

    def start_at(self, low: int) -> None:
        self.history.append(f"start at {low} (low was {self.low})")
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

    def handled_elsewhere(self, start: int, end: int) -> None:
        """Offsets in ``[start, end)`` are done (by another member)."""
        self.history.append(f"handled elsewhere [{start}, {end}) (low was {self.low})")
        if self.low is None or end <= self.low:
            return
        if start <= self.low:
            self.skip_to(end)
        else:
            self.above.update(range(start, end))
            self._advance()

    def skip_to(self, end: int) -> None:
        if self.low is not None and end > self.low:
            self.low = end
            self.above = {o for o in self.above if o >= end}
            self._advance()


class SkippedRecordSweeper:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        forwards: dict[str, Forward],
        own_commits: Callable[[], Mapping[Any, int | None]] | None = None,
    ) -> None:
        """``own_commits()``: the offsets this engine committed (or sought to), per
        partition; without it the group's committed offsets are read from the broker."""
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.forwards = forwards
        self.own_commits = own_commits
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self.forwarded = 0

    def handled(self, topic: str, partition: int, offset: int) -> None:
        tp = TopicPartition(topic, partition)
        self._progress.setdefault(tp, PartitionProgress()).add(offset)

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = await start_group_reader(self.bootstrap, self.group_id)
        return self._consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Track newly assigned partitions from their committed offsets.

        A broker that cannot answer now (it may be restarting) must not fail the rebalance:
        the partition is then started at the first sweep that can read its committed offset.
        """
        for faust_tp in partitions:
            tp = TopicPartition(faust_tp.topic, faust_tp.partition)
            if tp.topic in self.forwards:
                self._progress.setdefault(tp, PartitionProgress())
        try:
            await self._start_pending()
        except KafkaError as exc:
            log.warning("committed offsets unknown for now (%r); the next sweep reads them", exc)

    async def _start_pending(self) -> None:
        consumer = await self._started()
        for tp, progress in list(self._progress.items()):
            if progress.low is None:
                committed = await consumer.committed(tp)
                log.debug(
                    "tracking %s:%d from committed offset %s", tp.topic, tp.partition, committed
                )
                progress.start_at(committed if committed is not None else 0)

    def sought(self, committed: Mapping[Any, int | None], known: Mapping[Any, int]) -> None:
        """The engine sought its partitions to ``committed`` (None: never committed, read
        from 0); ``known`` is what it knew committed before (its own commits, its last
        seek). Offsets between the two were committed by another member (one that owned the
        partition before, committing late: the embedded broker does not refuse a commit
        from an old generation) and handled there, so they are not this engine's skips; a
        gap below ``known`` still is."""
        for faust_tp, offset in committed.items():
            progress = self._progress.get(TopicPartition(faust_tp.topic, faust_tp.partition))
            if progress is None:
                continue  # not tracked, or no longer assigned here
            target = offset or 0
            if progress.low is None:
                progress.start_at(target)
            else:
                progress.handled_elsewhere(known.get(faust_tp) or 0, target)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._progress.pop(TopicPartition(tp.topic, tp.partition), None)

    async def sweep(self) -> int:
        """Forward every record committed past but never handled; return how many.

        An offset with no record (a durable Tansu restart can leave some, see
        docs/notes/durability.md) is not a lost record: it is noted, not forwarded.
        """
        await self._start_pending()
        consumer = await self._started()
        own = self.own_commits() if self.own_commits is not None else None
        forwarded = 0
        for tp, progress in list(self._progress.items()):
            committed = own.get(tp) if own is not None else await consumer.committed(tp)
            if committed is None:
                continue
            missing = set(progress.missing(committed))
            if missing:
                records = await self._read(tp, min(missing), committed)
                lost = [record for record in records if record.offset in missing]
                if lost:
                    log.warning(
                        "%s:%d: %d record(s) below the committed offset %d were never handled "
                        "(offsets %s); forwarding them again (this partition here: %s; "
                        "group's committed offset now: %s)",
                        tp.topic,
                        tp.partition,
                        len(lost),
                        committed,
                        [record.offset for record in lost][:20],
                        "; ".join(progress.history),
                        await _group_committed(consumer, tp),
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
        """Every record in ``[start, end)``; raises rather than answer a partial list.

        Committed records only: with exactly-once a record of an aborted transaction was
        never meant to be handled (the agents read committed records too); read as a record
        it was counted never handled and forwarded, and its download reported twice (the
        chaos suite's ``exactly-once`` run)."""
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await reader.start()
        try:
            report = ReadReport()
            records = [
                record
                async for record in read_to_end(
                    reader,
                    [tp],
                    starts={tp: start},
                    stops={tp: end},
                    quiet_s=READ_TIMEOUT_S,
                    report=report,
                )
            ]
            if report.cut_short:
                raise KafkaTimeoutError(f"could not read {tp} up to {end}")
            return records
        finally:
            await reader.stop()


async def _group_committed(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | str:
    """The group's committed offset, for a warning (never fails it)."""
    try:
        return await consumer.committed(tp)
    except KafkaError as exc:
        return f"unknown ({exc!r})"

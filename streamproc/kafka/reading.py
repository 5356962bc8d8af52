"""Reading partitions to their end: one rule for every reader of a whole topic or a range of
it (replay, ``status``, the demo's report, the worker's sweeper, the tests).

The end is each partition's log end when the read starts (``offsets.log_ends``, read from a
fetch), so records written meanwhile are left for the next read and a busy topic cannot keep
a reader going forever. An empty fetch is not the end: a broker with its log on slow storage
answers a fetch with nothing when a read takes longer than the fetch's wait
(``tests/integration/test_replay_durable_broker.py``). Only ``quiet_s`` without a record
below the end ends a partition early (offsets with no record at its tail, which a durable
broker's restart can leave, or a broker that stopped answering): logged, and listed in the
``ReadReport`` so the caller can say so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streamproc.kafka.offsets import log_ends

log = logging.getLogger(__name__)
QUIET_S = 20.0
"""Seconds without a record, below a partition's end, before a reader gives up on its rest."""
FETCH_TIMEOUT_MS = 1000


@dataclass
class ReadReport:
    """What a read could not reach: (partition, where it stopped, its end)."""

    cut_short: list[tuple[TopicPartition, int, int]] = field(default_factory=list)


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: Sequence[TopicPartition],
    *,
    starts: Mapping[TopicPartition, int] | None = None,
    stops: Mapping[TopicPartition, int] | None = None,
    quiet_s: float = QUIET_S,
    report: ReadReport | None = None,
) -> AsyncIterator[ConsumerRecord]:
    """The records of ``tps``, partition after partition, from ``starts`` (default: the
    beginning) up to ``stops`` (default: the log ends when the read starts), in offset order.

    ``consumer`` is a started, group-less consumer; its assignment becomes each partition in
    turn."""
    if not tps:
        return
    ends = dict(stops) if stops is not None else await log_ends(consumer, tps)
    for tp in tps:
        async for record in _one_partition(consumer, tp, starts, ends[tp], quiet_s, report):
            yield record


async def _one_partition(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    starts: Mapping[TopicPartition, int] | None,
    stop: int,
    quiet_s: float,
    report: ReadReport | None,
) -> AsyncIterator[ConsumerRecord]:
    consumer.assign([tp])
    if starts is not None and tp in starts:
        consumer.seek(tp, starts[tp])
    else:
        await consumer.seek_to_beginning(tp)
    quiet_since = time.monotonic()
    while (position := await consumer.position(tp)) < stop:
        records = (await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)).get(tp, [])
        if not records:
            if time.monotonic() - quiet_since < quiet_s:
                continue
            log.warning(
                "%s: no record came for %.0f s at offset %d, below the end %d; "
                "going on without the rest of this partition",
                tp,
                quiet_s,
                position,
                stop,
            )
            if report is not None:
                report.cut_short.append((tp, position, stop))
            return
        quiet_since = time.monotonic()
        for record in records:
            if record.offset >= stop:
                return
            yield record

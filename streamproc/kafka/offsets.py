"""Where each partition's log really ends: read from a fetch, not trusted from ListOffsets.

Tansu 0.6.0 (the embedded broker) answers ListOffsets(latest) with the base offset of the
partition's newest record batch + 1, short of the true end by up to a batch's size minus
one, while every Fetch response carries the right high watermark
(``tests/integration/test_broker_facts.py::test_list_offsets_latest_is_short_after_batches``).
Kafka gives both answers alike, so asking a fetch costs one round trip and is right on both.
Everything that needs a log end (table recovery, replay, lag, status) asks here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

log = logging.getLogger(__name__)
FETCH_WAIT_MS = 20


async def log_ends(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The high watermark of each partition as a fetch reports it.

    ``consumer`` is a started, group-less consumer; its assignment becomes ``tps``.
    """
    if not tps:
        return {}
    consumer.assign(list(tps))
    listed = await consumer.end_offsets(list(tps))
    for tp in tps:
        # The newest batch starts at listed - 1 on Tansu; on Kafka it is the last record.
        consumer.seek(tp, max(listed[tp] - 1, 0))
    deadline = time.monotonic() + timeout_s
    while unknown := [tp for tp in tps if consumer.highwater(tp) is None]:
        if time.monotonic() > deadline:
            raise KafkaTimeoutError(f"no fetch answered for {unknown} within {timeout_s} s")
        await consumer.getmany(*unknown, timeout_ms=FETCH_WAIT_MS * 5, max_records=1)
    ends = {tp: max(listed[tp], consumer.highwater(tp)) for tp in tps}
    short = {tp: (listed[tp], ends[tp]) for tp in tps if listed[tp] != ends[tp]}
    if short:
        log.debug("ListOffsets(latest) was short (listed, fetched): %s", short)
    return ends


async def read_log_ends(
    bootstrap: str, tps: Sequence[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """``log_ends`` through a consumer of its own, for callers that have none to spare."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        request_timeout_ms=int(timeout_s * 1000) + 1000,
    )
    await consumer.start()
    try:
        return await asyncio.wait_for(log_ends(consumer, tps, timeout_s), timeout_s + 1)
    finally:
        await consumer.stop()

"""The fetch retry relay with exactly-once (``fetch/retries.py``, ``transactional=True``) on
Apache Kafka: a resend and its record's offset commit together, and a resend left open by a
relay that died before its commit is aborted by the partition's next relay, not seen twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from streamproc.fetch.retries import RetryRelay
from streamproc.kafka.topics import TopicSpec, ensure_topics

from helpers import read_topic

pytestmark = pytest.mark.integration


async def committed_offset(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    """None also while the group's coordinator is not found yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        return None
    finally:
        await admin.close()
    return offsets[tp].offset if tp in offsets else None


async def relay_until(relay: RetryRelay, done, timeout_s: float = 60) -> None:
    running = asyncio.create_task(relay.run())
    deadline = time.monotonic() + timeout_s
    try:
        while not await done():
            assert time.monotonic() < deadline, "the relay did not resend in time"
            assert not running.done(), running
            await asyncio.sleep(0.2)
    finally:
        await relay.stop()
        await running


async def test_a_resend_left_open_by_a_dead_relay_is_not_seen_twice(kafka):
    name = f"relay-{uuid.uuid4().hex[:6]}"
    waiting, target, group = f"{name}-wait", f"{name}-fetch", f"{name}-group"
    await ensure_topics(kafka.bootstrap, [TopicSpec(waiting, 1), TopicSpec(target, 1)])
    tp = TopicPartition(waiting, 0)
    plain = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await plain.start()
    try:
        await plain.send_and_wait(waiting, b"request", key=b"rec-1")
    finally:
        await plain.stop()
    # A relay that sent the request in its partition's transaction and died before the commit.
    dead = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, transactional_id=f"{group}-{waiting}-0"
    )
    await dead.start()
    await dead.begin_transaction()
    await (await dead.send(target, b"request", key=b"rec-1"))
    counts: Counter[str] = Counter()
    relay = RetryRelay(kafka.bootstrap, group, {waiting: 0.0}, target, counts, transactional=True)

    async def resent() -> bool:
        return await committed_offset(kafka.bootstrap, group, tp) == 1

    try:
        await relay_until(relay, resent)
    finally:
        await dead.stop()
    seen = await read_topic(kafka.bootstrap, target, isolation_level="read_committed")
    assert [record.value for record in seen] == [b"request"]
    assert counts["fetch.retry_resent"] == 1

"""``kafka.reading.read_to_end``: the one rule for reading a topic to its end."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamproc.kafka.reading import ReadReport, read_to_end
from streamproc.kafka.topics import TopicSpec, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


async def _write(bootstrap: str, topic: str, partition: int, count: int, tag: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for index in range(count):
            await producer.send_and_wait(topic, f"{tag}-{index}".encode(), partition=partition)
    finally:
        await producer.stop()


async def test_the_end_is_the_log_end_when_the_read_starts(broker):
    """Records written while a read goes on are left for the next read; an empty partition
    ends at once; every partition comes in offset order."""
    topic = f"reading-{uuid.uuid4().hex[:6]}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 3)])
    await _write(broker.bootstrap, topic, 0, 25, "a")
    await _write(broker.bootstrap, topic, 2, 5, "c")
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        seen = []
        report = ReadReport()
        async for record in read_to_end(consumer, tps, report=report):
            if not seen:
                await _write(broker.bootstrap, topic, 0, 10, "late")
                await _write(broker.bootstrap, topic, 1, 10, "late")
            seen.append((record.partition, record.offset, record.value.decode()))
        expected = [(0, i, f"a-{i}") for i in range(25)] + [(2, i, f"c-{i}") for i in range(5)]
        assert seen == expected
        assert report.cut_short == []

        again = [r.value async for r in read_to_end(consumer, tps)]
        assert len(again) == 25 + 10 + 10 + 5  # the next read takes the late records

        starts = {tps[0]: 20}
        stops = {tps[0]: 23, tps[1]: 0, tps[2]: 5}
        window = [
            (r.partition, r.offset)
            async for r in read_to_end(consumer, tps, starts=starts, stops=stops)
        ]
        assert window == [(0, 20), (0, 21), (0, 22)] + [(2, i) for i in range(5)]
    finally:
        await consumer.stop()


async def test_a_read_committed_read_skips_aborted_records_up_to_its_stop(kafka):
    """What the sweeper reads below a committed offset with exactly-once: records of an
    aborted transaction (and the transaction markers) are not records, and a window that
    ends in them ends at once rather than waiting for records that never come."""
    topic = f"reading-{uuid.uuid4().hex[:6]}"
    await ensure_topics(kafka.bootstrap, [TopicSpec(topic, 1)])
    await _write(kafka.bootstrap, topic, 0, 2, "kept")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=topic)
    await producer.start()
    try:
        await producer.begin_transaction()
        for index in range(3):
            await producer.send_and_wait(topic, f"aborted-{index}".encode(), partition=0)
        await producer.abort_transaction()
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        report = ReadReport()
        window = read_to_end(consumer, [tp], stops={tp: 6}, quiet_s=5, report=report)
        assert [record.value async for record in window] == [b"kept-0", b"kept-1"]
        assert report.cut_short == []
    finally:
        await consumer.stop()

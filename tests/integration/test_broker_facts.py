"""What the embedded broker (Tansu 0.6.0) does, pinned down as tests.

Later work depends on these answers (replay by time, group offset resets, restarts). A
failing test here means the broker changed, and the code that works around it should too.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from streamproc.broker import EmbeddedBroker
from streamproc.kafka.offsets import log_ends
from streamproc.kafka.topics import TopicSpec, ensure_topics

from helpers import broker_on_s3, read_topic

pytestmark = pytest.mark.integration


async def _producer(bootstrap: str, **options) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()
    return producer


async def test_memory_restart_acknowledges_and_drops_writes_to_a_lost_topic(tmp_path):
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        await ensure_topics(broker.bootstrap, [TopicSpec("lost", 1)])
        producer = await _producer(broker.bootstrap, request_timeout_ms=2000)
        try:
            await producer.send_and_wait("lost", b"before")
            broker.stop()
            broker.start()
            metadata = None
            for _ in range(40):
                try:
                    metadata = await producer.send_and_wait("lost", b"after")
                    break
                except Exception:
                    await asyncio.sleep(0.25)
            assert metadata is not None, "the write after the restart was never acknowledged"
        finally:
            await producer.stop()
        assert await read_topic(broker.bootstrap, "lost", timeout_s=1) == []
    finally:
        broker.stop()


async def test_offsets_for_times_inside_the_log_and_after_its_end(broker):
    await ensure_topics(broker.bootstrap, [TopicSpec("by-time", 1)])
    producer = await _producer(broker.bootstrap)
    stamps = []
    try:
        for index in range(4):
            metadata = await producer.send_and_wait("by-time", b"m%d" % index)
            stamps.append(metadata.timestamp)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    tp = TopicPartition("by-time", 0)
    try:
        inside = (await consumer.offsets_for_times({tp: stamps[2]}))[tp]
        assert inside.offset == 2
        after_end = (await consumer.offsets_for_times({tp: stamps[-1] + 60_000}))[tp]
        # Kafka answers "none" here; Tansu answers offset 0 with timestamp -1.
        assert (after_end.offset, after_end.timestamp) == (0, -1)
    finally:
        await consumer.stop()


async def test_group_offsets_can_be_reset_by_committing_an_earlier_offset(broker):
    await ensure_topics(broker.bootstrap, [TopicSpec("resettable", 1)])
    producer = await _producer(broker.bootstrap)
    try:
        for index in range(10):
            await producer.send("resettable", b"%d" % index)
        await producer.flush()
    finally:
        await producer.stop()
    tp = TopicPartition("resettable", 0)
    consumer = AIOKafkaConsumer(
        "resettable",
        bootstrap_servers=broker.bootstrap,
        group_id="reset-me",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)
        await consumer.commit({tp: 7})
        assert await consumer.committed(tp) == 7
        await consumer.commit({tp: 2})
        assert await consumer.committed(tp) == 2
    finally:
        await consumer.stop()


async def test_admin_offset_fetch_breaks_the_connection(broker):
    """``list_consumer_group_offsets`` fails (bad response framing); use ``committed()``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        with pytest.raises(KafkaConnectionError):
            await admin.list_consumer_group_offsets("reset-me")
    finally:
        await admin.close()


async def test_topics_can_be_deleted(broker):
    await ensure_topics(broker.bootstrap, [TopicSpec("doomed", 1)])
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        assert "doomed" in await admin.list_topics()
        await admin.delete_topics(["doomed"])
        assert "doomed" not in await admin.list_topics()
    finally:
        await admin.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compressed_batches_round_trip(broker, codec):
    producer = await _producer(broker.bootstrap, compression_type=codec)
    try:
        await producer.send_and_wait(f"codec-{codec}", b"compressed with " + codec.encode())
    finally:
        await producer.stop()
    [record] = await read_topic(broker.bootstrap, f"codec-{codec}", expect=1)
    assert record.value == b"compressed with " + codec.encode()


async def test_compaction_is_not_run_within_seconds(broker):
    """A compacted topic keeps every record here: consumers must cope with old versions."""
    await ensure_topics(
        broker.bootstrap, [TopicSpec("compacted", 1, {"cleanup.policy": "compact"})]
    )
    producer = await _producer(broker.bootstrap)
    try:
        for index in range(300):
            await producer.send("compacted", b"%d" % index, key=b"k%d" % (index % 3))
        await producer.flush()
    finally:
        await producer.stop()
    await asyncio.sleep(2)
    assert len(await read_topic(broker.bootstrap, "compacted", expect=300)) == 300


async def test_list_offsets_latest_is_short_after_batches(broker):
    """ListOffsets(latest) answers the newest batch's base offset + 1 (Kafka: its last offset
    + 1), while a fetch's high watermark is right. ``streamproc/kafka/offsets.py`` reads the
    end from a fetch; without it, Faust's recovery stops short of a changelog's end and a
    rocksdb:// store raises ConsistencyError after a kill."""
    await ensure_topics(broker.bootstrap, [TopicSpec("batched-ends", 1)])
    tp = TopicPartition("batched-ends", 0)
    producer = await _producer(broker.bootstrap, linger_ms=1000)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=20)
    await consumer.start()
    produced, answers = 0, []
    try:
        for size in (1, 3, 5, 7, 2, 6):
            sent = [await producer.send("batched-ends", b"x%d" % i) for i in range(size)]
            await producer.flush()
            offsets = [(await future).offset for future in sent]
            assert offsets == list(range(produced, produced + size)), "not one batch"
            produced += size
            listed = (await consumer.end_offsets([tp]))[tp]
            answers.append((size, produced, listed))
            assert (await log_ends(consumer, [tp]))[tp] == produced
    finally:
        await producer.stop()
        await consumer.stop()
    assert answers == [(size, end, end - size + 1) for size, end, _ in answers], answers


async def test_committed_offsets_survive_the_committing_consumer(broker):
    await ensure_topics(broker.bootstrap, [TopicSpec("committed-kept", 2)])
    tps = [TopicPartition("committed-kept", p) for p in (0, 1)]
    for attempt in range(2):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id="keeper", enable_auto_commit=False
        )
        await consumer.start()
        try:
            if attempt == 0:
                consumer.assign(tps)
                await consumer.commit({tps[0]: 5, tps[1]: 9})
            else:
                assert [await consumer.committed(tp) for tp in tps] == [5, 9]
        finally:
            await consumer.stop()


MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main():
    consumer = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    while True:
        await consumer.getmany(timeout_ms=500)
        print(sorted(p.partition for p in consumer.assignment()), flush=True)

asyncio.run(main())
"""


async def test_a_killed_members_partitions_move_after_its_session_times_out(broker):
    """What a restarted worker waits for: the dead member leaves the group only when its
    session expires, then the survivors get its partitions."""
    import signal
    import sys
    import time

    await ensure_topics(broker.bootstrap, [TopicSpec("shared-work", 4)])
    command = [sys.executable, "-c", MEMBER, broker.bootstrap, "shared-work", "sharers"]
    member = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    survivor = AIOKafkaConsumer(
        "shared-work",
        bootstrap_servers=broker.bootstrap,
        group_id="sharers",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    try:
        await asyncio.sleep(3)  # the member joins first
        await survivor.start()
        deadline = time.monotonic() + 30
        while len(survivor.assignment()) in (0, 4) and time.monotonic() < deadline:
            await survivor.getmany(timeout_ms=500)
        shared = {p.partition for p in survivor.assignment()}
        assert 0 < len(shared) < 4, f"the group did not split the partitions: {shared}"
        member.send_signal(signal.SIGKILL)
        await member.wait()
        killed_at = time.monotonic()
        while len(survivor.assignment()) < 4 and time.monotonic() < killed_at + 30:
            await survivor.getmany(timeout_ms=500)
        assert {p.partition for p in survivor.assignment()} == {0, 1, 2, 3}
        assert time.monotonic() - killed_at < 20, "the dead member's session outlived 20 s"
    finally:
        if member.returncode is None:
            member.kill()
            await member.wait()
        await survivor.stop()


async def test_a_short_fetch_wait_reads_nothing_from_s3_storage(s3_endpoint, tmp_path):
    """Storing its log on S3, the broker answers a fetch with what its storage read within
    the fetch's max wait: with storage slower than the wait, nothing, fetch after fetch, while
    a consumer that waits 1500 ms (Faust's value) reads every record. Real Kafka answers with
    what the log holds. This is why the worker keeps Faust's 1500 ms by default
    (``STREAMPROC_FETCH_MAX_WAIT_MS``; the chaos suite's durable run stalled with 20 ms)."""
    with broker_on_s3(s3_endpoint, tmp_path, delay_s=0.2) as broker:
        await ensure_topics(broker.bootstrap, [TopicSpec("slow", 1)])
        producer = await _producer(broker.bootstrap, linger_ms=50)
        try:
            await asyncio.gather(*[await producer.send("slow", b"%d" % n) for n in range(10)])
        finally:
            await producer.stop()
        assert len(await _read_from_start(broker.bootstrap, "slow", 1500, 10, within_s=10)) == 10
        assert await _read_from_start(broker.bootstrap, "slow", 50, 10, within_s=3) == []


async def _read_from_start(
    bootstrap: str, topic: str, max_wait_ms: int, want: int, within_s: float
) -> list:
    """Records read from offset 0 (up to ``want``, for at most ``within_s``) by a consumer
    whose fetches the broker may hold ``max_wait_ms``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=max_wait_ms, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        records: list = []
        deadline = asyncio.get_running_loop().time() + within_s
        while len(records) < want and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            records += batch.get(tp, [])
        return records
    finally:
        await consumer.stop()


async def test_a_terminated_broker_serves_open_connections_for_seconds(tmp_path):
    """SIGTERM does not stop Tansu at once: while a client stays connected it goes on
    acknowledging that client's writes for ~5 s, then exits. A test that means to produce
    while the broker is away must wait for the exit (``EmbeddedBroker.stop`` returns then):
    the chaos suite's durable run once stopped it while its sender still sent, and every
    webhook was acknowledged before the broker went (tests/chaos/test_chaos.py, ``chaos``)."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    producer = await _producer(broker.bootstrap, request_timeout_ms=1000)
    try:
        await producer.send_and_wait("draining", b"before")
        started = asyncio.get_running_loop().time()
        stopping = asyncio.ensure_future(asyncio.to_thread(broker.stop))
        acknowledged = 0
        while not stopping.done():
            try:
                await asyncio.wait_for(producer.send_and_wait("draining", b"during"), 1.5)
                acknowledged += 1
            except (KafkaError, TimeoutError):
                break
            await asyncio.sleep(0.05)
        await stopping
        took = asyncio.get_running_loop().time() - started
    finally:
        broker.stop()
        await producer.stop()
    assert took > 2, f"the broker exited within {took:.1f} s"
    assert acknowledged >= 10, f"only {acknowledged} writes acknowledged while it stopped"

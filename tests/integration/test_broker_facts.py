"""What each broker does, pinned down as tests: the embedded Tansu 0.6.0 and Apache Kafka.

Each fact runs on both brokers (ids ``[tansu]``, ``[kafka]``) and says where it holds; the
few that need a broker of their own name theirs. Later work depends on these answers (replay
by time, group offset resets, restarts, log ends, fetch waits). A failing test here means a
broker changed, and the code that works around it should too.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from streamproc.kafka.metadata import topic_partitions
from streamproc.kafka.offsets import log_ends
from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.local.broker import EmbeddedBroker

from helpers import broker_name, broker_on_s3, delete_topics, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


async def _producer(bootstrap: str, **options) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()
    return producer


async def test_memory_restart_acknowledges_and_drops_writes_to_a_lost_topic(tmp_path):
    """Tansu only: in memory, a restarted broker has lost its topics and acknowledges writes
    to them. Kafka keeps its log on disk (``test_a_killed_kafka_node_restarts_with_its_log``)."""
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
        if broker_name(broker) == "kafka":
            assert after_end is None
        else:  # Tansu: offset 0 with timestamp -1 (``streamproc.replay.run`` reads it as the end)
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


async def test_admin_offset_fetch_breaks_the_connection_on_tansu_only(broker):
    """Tansu: ``list_consumer_group_offsets`` fails (bad response framing), so streamproc
    reads a group's offsets with ``committed()``, which works on both."""
    await ensure_topics(broker.bootstrap, [TopicSpec("offsets-fetched", 1)])
    tp = TopicPartition("offsets-fetched", 0)
    # No auto-commit: on stop() it would commit the position the fetcher reset to (0 on
    # this empty topic) over the 2 committed here, whenever the reset landed first.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id="fetch-my-offsets", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: 2})
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        if broker_name(broker) == "kafka":
            offsets = await admin.list_consumer_group_offsets("fetch-my-offsets")
            assert offsets[tp].offset == 2
        else:
            with pytest.raises(KafkaConnectionError):
                await admin.list_consumer_group_offsets("fetch-my-offsets")
    finally:
        await admin.close()


async def test_topics_can_be_deleted(broker):
    """Deletion is asynchronous on Kafka: ``delete_topics`` waits until the list drops it."""
    await ensure_topics(broker.bootstrap, [TopicSpec("doomed", 1)])
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        assert "doomed" in await admin.list_topics()
    finally:
        await admin.close()
    await delete_topics(broker.bootstrap, ["doomed"])


async def test_partitions_of_a_topic_the_client_never_used(broker):
    """Tansu answers a metadata request for no topics with every topic, so a consumer's
    cached metadata knew every topic after ``topics()``; Kafka answers with none. Replay,
    status and the demo ask the cluster (``streamproc.kafka.metadata``), right on both."""
    await ensure_topics(broker.bootstrap, [TopicSpec("never-used", 3)])
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        cached = consumer.partitions_for_topic("never-used")
        asked = await topic_partitions(consumer, "never-used")
    finally:
        await consumer.stop()
    assert cached == (None if broker_name(broker) == "kafka" else {0, 1, 2})
    assert asked == [TopicPartition("never-used", p) for p in range(3)]


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
    """A compacted topic keeps every record for a while on both (Kafka never compacts the
    active segment): consumers of the state topic must cope with old versions."""
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


async def test_list_offsets_latest_is_short_after_batches_on_tansu_only(broker):
    """Tansu: ListOffsets(latest) answers the newest batch's base offset + 1; Kafka: its last
    offset + 1. A fetch's high watermark is right on both. ``streamproc/kafka/offsets.py``
    reads the end from a fetch; without it, Faust's recovery stops short of a changelog's
    end on Tansu and a rocksdb:// store raises ConsistencyError after a kill."""
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
    if broker_name(broker) == "kafka":
        assert answers == [(size, end, end) for size, end, _ in answers], answers
    else:
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
    """Tansu only (its S3 storage engine). Storing its log on S3, the broker answers a fetch
    with what its storage read within the fetch's max wait: with storage slower than the
    wait, nothing, fetch after fetch, while a consumer that waits 1500 ms (Faust's value)
    reads every record. Kafka answers with what the log holds. This is why the worker keeps
    Faust's 1500 ms by default (``STREAMPROC_FETCH_MAX_WAIT_MS``; the chaos suite's durable
    run stalled with 20 ms), which costs nothing on Kafka
    (``test_a_waiting_fetch_answers_when_a_record_arrives``)."""
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
    """Tansu only. SIGTERM does not stop Tansu at once: while a client stays connected it goes on
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


async def test_a_waiting_fetch_answers_when_a_record_arrives(broker):
    """Kafka answers a fetch it is holding as soon as a record arrives, so a long fetch wait
    (the worker's 1500 ms) adds nothing to a quiet stream's latency there. Tansu holds the
    fetch for about half its wait (4 s of 8 s here, 0.75 s of Faust's 1500 ms), whatever
    arrives: on Tansu a quiet stream's latency includes that."""
    await ensure_topics(broker.bootstrap, [TopicSpec("quiet", 1)])
    tp = TopicPartition("quiet", 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=8000, enable_auto_commit=False
    )
    await consumer.start()
    producer = await _producer(broker.bootstrap)
    try:
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        waiting = asyncio.ensure_future(consumer.getone(tp))
        await asyncio.sleep(0.5)  # the consumer's fetch is now held by the broker
        sent_at = asyncio.get_running_loop().time()
        await producer.send_and_wait("quiet", b"now")
        record = await asyncio.wait_for(waiting, 20)
        took = asyncio.get_running_loop().time() - sent_at
    finally:
        await producer.stop()
        await consumer.stop()
    assert record.value == b"now"
    if broker_name(broker) == "kafka":
        assert took < 2, f"the held fetch answered {took:.1f} s after the record arrived"
    else:
        assert took > 2, f"Tansu answered a held fetch {took:.1f} s after the record arrived"


async def test_idempotent_and_transactional_producers_work_on_kafka_only(broker):
    """Tansu answers InitProducerId with UnknownError: the edge falls back to a plain
    producer there (``streamproc.edge.publisher``); on Kafka it is idempotent."""
    await ensure_topics(broker.bootstrap, [TopicSpec("idempotent", 1)])
    kinds = {
        "idempotent": {"enable_idempotence": True},
        "transactional": {"transactional_id": "t1"},
    }
    works = {}
    for kind, options in kinds.items():
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=5000, **options
        )
        try:
            await asyncio.wait_for(producer.start(), 20)
            if kind == "transactional":
                async with producer.transaction():
                    await producer.send_and_wait("idempotent", b"in a transaction")
            else:
                await producer.send_and_wait("idempotent", b"idempotent")
            works[kind] = True
        except (KafkaError, TimeoutError):
            works[kind] = False
        finally:
            await producer.stop()
    expected = broker_name(broker) == "kafka"
    assert works == {"idempotent": expected, "transactional": expected}


async def test_a_killed_kafka_node_restarts_with_its_log(kafka_available, tmp_path):
    """Kafka only (Tansu in memory forgets: the first test here). SIGKILLed with no shutdown,
    a Kafka node recovers its log from disk: every acknowledged record is there again."""
    from streamproc.local.apache_kafka import KafkaBroker

    kafka = KafkaBroker(tmp_path / "kafka")
    kafka.start()
    try:
        await ensure_topics(kafka.bootstrap, [TopicSpec("kept", 2)])
        producer = await _producer(kafka.bootstrap, linger_ms=5)
        try:
            await asyncio.gather(*[await producer.send("kept", b"%d" % n) for n in range(500)])
        finally:
            await producer.stop()
        kafka.kill()
        kafka.start()
        values = {r.value for r in await read_topic(kafka.bootstrap, "kept", expect=500)}
        assert values == {b"%d" % n for n in range(500)}
    finally:
        kafka.stop()

"""What Faust itself does across rebalances, with a plain Faust app (no streamproc pipeline).

faust-streaming 0.15.3 resumes a worker's stream partitions before it seeks them to their
committed offsets when a rebalance ends; records fetched in between make its read offset
jump, the offsets jumped over are committed as a "gap" and dropped when fetched again. The
same harness with ``STREAMPROC_FAUST_FLAVOUR=faust`` (Faust as shipped) left 8 of 38,520
records never processed in three join/leave rounds (28 of 61,760 in five), and 13 of 25,340
and 16 of 26,520 in two runs of the two rounds it now has (2026-12-02; 72 s instead of 103);
``streamproc.worker.engine`` seeks first, and this test holds it to zero. See
docs/notes/durability.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.local.processes import free_port, stop_process
from streamproc.worker.engine import _seek_to_committed_or_start

pytestmark = pytest.mark.integration
APP = Path(__file__).resolve().parent.parent / "apps" / "plain_faust.py"
FLAVOUR = os.environ.get("STREAMPROC_FAUST_FLAVOUR", "streamproc")
ROUNDS = 2


def start(bootstrap: str, app_id: str, topic: str, folder: Path, name: str):
    log = (folder / f"{name}.log").open("ab")
    command = [sys.executable, str(APP), bootstrap, app_id, topic, str(folder / "processed")]
    command += [str(free_port()), str(folder / f"data-{name}"), FLAVOUR, name]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)


def processed(folder: Path) -> set[tuple[int, int]]:
    lines = (folder / "processed").read_text().splitlines()
    return {(int(p), int(o)) for _, p, o in (line.split() for line in lines)}


@pytest.mark.long  # 70 s; the chaos suite's join/leave runs cover the worker itself
async def test_no_record_is_skipped_when_a_member_joins_and_leaves_under_load(broker, tmp_path):
    rng = random.Random(7)
    app_id, topic = f"plain-{uuid.uuid4().hex[:6]}", f"plain-in-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent: set[tuple[int, int]] = set()
    stop = asyncio.Event()

    async def produce() -> None:
        n = 0
        while not stop.is_set():
            futures = [
                await producer.send(topic, b"v", key=b"k%d" % ((n + i) % 50)) for i in range(20)
            ]
            for future in futures:
                metadata = await future
                sent.add((metadata.partition, metadata.offset))
            n += 20
            await asyncio.sleep(0.01)

    first = start(broker.bootstrap, app_id, topic, tmp_path, "first")
    try:
        await asyncio.sleep(6)
        producing = asyncio.create_task(produce())
        for round_ in range(ROUNDS):
            second = start(broker.bootstrap, app_id, topic, tmp_path, f"second-{round_}")
            await asyncio.sleep(rng.uniform(5, 8))
            await asyncio.to_thread(stop_process, second)
            await asyncio.sleep(rng.uniform(3, 5))
        stop.set()
        await producing
        for _ in range(90):
            if not (missing := sent - processed(tmp_path)):
                break
            await asyncio.sleep(1)
    finally:
        await producer.stop()
        stop_process(first)
    print(f"\n{FLAVOUR}: {len(sent)} records sent, {len(missing)} never processed")
    assert not missing, f"{len(missing)} record(s) never processed: {sorted(missing)[:20]}"


async def test_seek_to_committed_leaves_a_never_committed_partition_where_reading_stopped(broker):
    """aiokafka's ``seek_to_committed`` rewinds only partitions committed above 0; Faust relies
    on it to take back what it drained and dropped at a rebalance. ``streamproc.worker.engine``
    sends a never-committed stream partition back to offset 0 (docs/notes/durability.md,
    section 4)."""
    topic = f"never-committed-{uuid.uuid4().hex[:6]}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 2)])
    committed_tp, never_tp = TopicPartition(topic, 0), TopicPartition(topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for offset in range(5):
            for tp in (committed_tp, never_tp):
                await producer.send_and_wait(topic, b"%d" % offset, partition=tp.partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=f"{topic}-group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([committed_tp, never_tp])

        async def read_to_end() -> dict[TopicPartition, list[int]]:
            offsets: dict[TopicPartition, list[int]] = {committed_tp: [], never_tp: []}
            while [tp for tp in offsets if await consumer.position(tp) < 5]:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    offsets[tp] += [record.offset for record in records]
            return offsets

        await read_to_end()
        await consumer.commit({committed_tp: 3})

        assert await consumer.seek_to_committed() == {committed_tp: 3, never_tp: None}
        assert await consumer.position(committed_tp) == 3
        assert await consumer.position(never_tp) == 5, "aiokafka rewound it: drop correction 4"

        assert await _seek_to_committed_or_start(consumer, changelogs=set()) == {
            committed_tp: 3,
            never_tp: None,
        }
        assert await read_to_end() == {committed_tp: [3, 4], never_tp: [0, 1, 2, 3, 4]}
    finally:
        await consumer.stop()


async def test_records_fetched_for_an_abandoned_call_are_put_back(broker):
    """Correction 5 (``engine.StreamprocConsumerThread``): Faust's consumer thread goes on
    draining records for a getmany whose caller was cancelled (its Fetcher stops at every
    rebalance); drained for nobody, they were never handed to an agent. Here they are put
    back: the next read gets them, from the same offset."""
    from types import SimpleNamespace

    from streamproc.worker.engine import StreamprocConsumerThread, _Fetch

    topic = f"abandoned-{uuid.uuid4().hex[:6]}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for index in range(5):
            await producer.send_and_wait(topic, b"%d" % index)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        thread = StreamprocConsumerThread.__new__(StreamprocConsumerThread)
        thread.consumer = SimpleNamespace(flow_active=True)
        abandoned = _Fetch()
        abandoned.abandoned = True
        nothing = await thread._fetch_for(consumer, frozenset({tp}), abandoned, 5.0, None)
        assert nothing == {} and await consumer.position(tp) == 0  # as if never drained
        taken = await thread._fetch_for(consumer, frozenset({tp}), _Fetch(), 5.0, None)
        assert [record.value for record in taken[tp]] == [b"0", b"1", b"2", b"3", b"4"]
        assert await consumer.position(tp) == 5
    finally:
        await consumer.stop()

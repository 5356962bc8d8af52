"""What Faust's ``processing_guarantee="exactly_once"`` does on Apache Kafka, with a plain
Faust app (``tests/apps/plain_faust_eos.py``): faust-streaming 0.15.3 as shipped, and with
streamproc's engine (``streamproc.worker.engine``, correction 13).

Faust keeps one transactional producer per partition it is assigned and commits each
partition's input offsets in that partition's transaction; a table's changelog joins it (a
``read_committed`` consumer sees neither before the commit). As shipped, a message an agent
sends goes into the transaction of the partition it is *sent to*, found from the consumer's
metadata:

- to a topic the app does not read (the derived topics), there is none: the message goes out
  on the plain producer, outside every transaction, and a ``read_committed`` consumer sees it
  before the record that made it is committed (or even if its transaction aborts);
- to another partition of a topic it reads (the instance join's links, the re-keyed topic), it
  waits in that partition's transaction, which commits only when that partition's own input
  does; with no input there it never does (the broker aborts it after the transaction
  timeout), and had another worker owned the partition there would be no producer for it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamproc.kafka.partitions import partition_for
from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.local.processes import free_port, stop_process

pytestmark = pytest.mark.integration
APP = Path(__file__).resolve().parent.parent / "apps" / "plain_faust_eos.py"
FLAVOURS = ["faust", "streamproc"]


def key_on(partition: int, prefix: str) -> bytes:
    return next(
        key
        for index in range(1000)
        if partition_for(key := f"{prefix}-{index}".encode(), 2) == partition
    )


class EosApp:
    def __init__(self, bootstrap: str, folder: Path, flavour: str, commit_s: float) -> None:
        self.bootstrap = bootstrap
        self.app_id = f"eos-{uuid.uuid4().hex[:6]}"
        self.source, self.output = f"{self.app_id}-in", f"{self.app_id}-out"
        self.processed = folder / "processed"
        self.processed.touch()
        command = [sys.executable, str(APP), bootstrap, self.app_id, self.source, self.output]
        command += [str(self.processed), str(free_port()), str(folder / "data"), flavour]
        command += [str(commit_s)]
        self.command, self.log = command, folder / "app.log"

    async def __aenter__(self) -> EosApp:
        names = (self.source, self.output, f"{self.output}-loop")
        await ensure_topics(self.bootstrap, [TopicSpec(name, 2) for name in names])
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                self.command, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        stop_process(self.process)

    async def send(self, key: bytes, value: bytes) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(self.source, value, key=key)
        finally:
            await producer.stop()

    async def wait_processed(self, count: int, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.processed.read_text().splitlines()) < count:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            await asyncio.sleep(0.2)


async def committed(
    bootstrap: str, topic: str, seconds: float, enough: int | None = None
) -> list[tuple[int, bytes]]:
    """(partition, key) of every message a ``read_committed`` consumer sees within
    ``seconds`` (or until it has seen ``enough``)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (enough is None or len(seen) < enough):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += [(record.partition, record.key) for record in records]
    finally:
        await consumer.stop()
    return seen


@pytest.mark.long  # ~75 s: it waits for a 30 s commit interval
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_an_output_is_seen_only_once_the_record_that_made_it_is_committed(
    kafka, tmp_path, flavour
):
    """Commits every 30 s from the start (the record is processed within seconds of it):
    nothing of the record's transaction is visible before the first commit."""
    input_key, output_key = key_on(0, "in"), key_on(0, "out")
    async with EosApp(kafka.bootstrap, tmp_path, flavour, commit_s=30) as app:
        await app.send(input_key, output_key)
        await app.wait_processed(1)
        output = await committed(kafka.bootstrap, app.output, seconds=3)
        changelog = await committed(kafka.bootstrap, f"{app.app_id}-seen-changelog", seconds=1)
        assert changelog == [], "the changelog is in the transaction"
        if flavour == "faust":
            assert output == [(0, output_key)], "as shipped, the output is outside it"
        else:
            assert output == []
            output = await committed(kafka.bootstrap, app.output, seconds=60, enough=1)
            assert output == [(0, output_key)]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_message_to_another_partition_commits_with_the_record_that_sent_it(
    kafka, tmp_path, flavour
):
    """Input on partition 0 only; the ``loop`` message goes to partition 1."""
    input_key, output_key = key_on(0, "in"), key_on(1, "out")
    async with EosApp(kafka.bootstrap, tmp_path, flavour, commit_s=0.5) as app:
        await app.send(input_key, output_key)
        await app.wait_processed(1)
        seen = await committed(kafka.bootstrap, f"{app.output}-loop", seconds=8)
    if flavour == "faust":
        assert seen == [], "as shipped, it waits in partition 1's transaction"
    else:
        assert seen == [(1, output_key)]

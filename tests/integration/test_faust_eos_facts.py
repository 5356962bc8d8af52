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
    def __init__(
        self,
        bootstrap: str,
        folder: Path,
        flavour: str,
        commit_s: float,
        app_id: str | None = None,
        name: str = "app",
    ) -> None:
        """``app_id`` of a running app: another member of its group."""
        self.bootstrap = bootstrap
        self.app_id = app_id or f"eos-{uuid.uuid4().hex[:6]}"
        self.source, self.output = f"{self.app_id}-in", f"{self.app_id}-out"
        self.processed = folder / f"{name}.processed"
        self.processed.touch()
        command = [sys.executable, str(APP), bootstrap, self.app_id, self.source, self.output]
        command += [str(self.processed), str(free_port()), str(folder / f"{name}.data")]
        command += [flavour, str(commit_s)]
        self.command, self.log = command, folder / f"{name}.log"

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

    def handled(self) -> list[str]:
        """``partition offset`` of each record the app handled, in order."""
        return self.processed.read_text().splitlines()

    async def wait_processed(self, count: int, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.handled()) < count:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            await asyncio.sleep(0.2)

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Until the group's rebalance that took this app in has ended in it."""
        deadline = time.monotonic() + timeout_s
        while "Worker ready" not in self.log.read_text():
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


@pytest.mark.long  # ~35 s each; the default run has the worker's own exactly-once test
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


@pytest.mark.long  # ~35 s each: two apps and a rebalance
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_record_handled_before_a_rebalance_is_committed_once(kafka, tmp_path, flavour):
    """A record on each partition, handled and acknowledged; no commit on a timer (1,000 s).
    A second member joins, each keeps one partition, and a second record on each partition
    is handled after the rebalance; then both stop, committing on the way. As shipped, the
    revocation forgot the acks before committing, so the first records were read again
    from offset 0 and handled twice, and a kept transaction carried two copies of its output
    (correction 15 in ``streamproc.worker.engine``)."""
    first_records = {key_on(0, "in"): key_on(0, "out"), key_on(1, "in"): key_on(1, "out")}
    later_records = {key_on(0, "in2"): key_on(0, "out2"), key_on(1, "in2"): key_on(1, "out2")}
    async with EosApp(kafka.bootstrap, tmp_path, flavour, commit_s=1000) as first:
        for input_key, output_key in first_records.items():
            await first.send(input_key, output_key)
        await first.wait_processed(2)
        second = EosApp(kafka.bootstrap, tmp_path, flavour, 1000, first.app_id, "second")
        async with second:
            await second.wait_ready()
            for input_key, output_key in later_records.items():
                await first.send(input_key, output_key)
            deadline = time.monotonic() + 60
            while not {"0 1", "1 1"} <= set(handled := first.handled() + second.handled()):
                assert time.monotonic() < deadline, handled
                await asyncio.sleep(0.2)
    seen = await committed(kafka.bootstrap, first.output, seconds=10)
    if flavour == "faust":
        assert len(handled) > len(set(handled)), f"as shipped, handled again: {handled}"
        assert len(seen) > len(set(seen)), f"as shipped, committed twice: {seen}"
    else:
        assert sorted(handled) == ["0 0", "0 1", "1 0", "1 1"]
        outputs = [*first_records.values(), *later_records.values()]
        assert sorted(seen) == sorted((partition_for(key, 2), key) for key in outputs)

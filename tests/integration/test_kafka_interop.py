"""Interop on Apache Kafka: what other clients and Kafka's own tools see agrees with streamproc.

- A librdkafka consumer (``confluent-kafka``, the client most analytics teams use) reads every
  derived topic and, after the documented de-duplication by event id, gets exactly what the
  project's own readers get.
- Kafka's consumer-group tool reports the same lag as ``streamproc lag``.
- A group rewound with that tool's ``--reset-offsets --to-datetime`` and ``streamproc replay
  --from-time`` start from the same offsets.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer
from confluent_kafka import TopicPartition as RdTopicPartition
from test_worker_restart import lifecycle, produce, wait_until

from streamproc.local.apache_kafka import run_tool
from streamproc.local.processes import stop_process
from streamproc.replay.run import ReplayRange, group_lag, replay
from streamproc.settings import Settings
from streamproc.worker.topics import prepare_topics

from helpers import lag_report, messages, read_topic, s3_client, start_worker, worker_env

pytestmark = pytest.mark.integration
GROUP_TOOL = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
FIRST, LATER = 20, 10


def read_with_librdkafka(bootstrap: str, topic: str) -> list[tuple]:
    """Every record of ``topic`` as (partition, offset, key, value), read by librdkafka."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"rd-{uuid.uuid4().hex[:6]}"}
        | {"enable.auto.commit": False, "enable.partition.eof": True}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        ends = {}
        for p in metadata.topics[topic].partitions:
            ends[p] = consumer.get_watermark_offsets(RdTopicPartition(topic, p), timeout=10)[1]
        consumer.assign([RdTopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records, deadline = [], time.monotonic() + 30
        while any(ends[p] > 0 for p in ends) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            records.append((message.partition(), message.offset(), message.key(), message.value()))
            if message.offset() + 1 >= ends[message.partition()]:
                ends[message.partition()] = 0
        return sorted(records)
    finally:
        consumer.close()


def by_event_id(values: list[bytes]) -> dict[str, bytes]:
    """The documented de-duplication: one message per event id (all copies are equal)."""
    return {orjson.loads(value)["event_id"]: value for value in values}


@pytest.fixture(scope="module")
async def pipeline_run(kafka, s3_endpoint, tmp_path_factory):
    """A worker that folded ``FIRST`` recordings, stopped; then ``LATER`` more events in raw
    that its group has not read. Returns the worker's env and the time between the two."""
    tmp_path = tmp_path_factory.mktemp("interop")
    prefix = f"interop-{uuid.uuid4().hex[:6]}"
    env = worker_env(kafka.bootstrap, s3_endpoint, prefix, tmp_path / "downloads")
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    for index in range(FIRST):
        key = f"files/rec-{index:04d}.mp4"
        s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key=key, Body=b"i" * 100)
    raw = env["STREAMPROC_RAW_TOPIC"]
    await prepare_topics(Settings.from_env(env))  # 4 partitions each, as `streamproc topics`
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        await produce(kafka.bootstrap, raw, lifecycle(range(FIRST)))

        async def downloaded() -> bool:
            found = await read_topic(kafka.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], 0, 0.5)
            return len({m["event_id"] for m in messages(found)}) == FIRST

        assert await wait_until(downloaded, 120), "the worker did not download everything"
    finally:
        stop_process(worker.process)
    await asyncio.sleep(1.0)
    between = datetime.now(UTC)
    await asyncio.sleep(1.0)
    await produce(kafka.bootstrap, raw, lifecycle(range(FIRST, FIRST + LATER)))
    return env, between


@pytest.mark.parametrize("role", ["STATE", "LIFECYCLE", "DOWNLOADS", "DLQ"])
async def test_librdkafka_reads_what_streamproc_reads(kafka, pipeline_run, role):
    env, _ = pipeline_run
    topic = env[f"STREAMPROC_{role}_TOPIC"]
    ours = await read_topic(kafka.bootstrap, topic)
    theirs = await asyncio.to_thread(read_with_librdkafka, kafka.bootstrap, topic)
    assert theirs == [(r.partition, r.offset, r.key, r.value) for r in ours]
    if role in ("LIFECYCLE", "DOWNLOADS"):
        assert ours, f"nothing on {topic}"
        assert by_event_id([v for *_, v in theirs]) == by_event_id([r.value for r in ours])


async def test_kafkas_group_tool_reports_the_lag_streamproc_reports(kafka, pipeline_run):
    env, _ = pipeline_run
    group, raw = env["STREAMPROC_APP_ID"], env["STREAMPROC_RAW_TOPIC"]
    described = await asyncio.to_thread(
        run_tool, GROUP_TOOL, "--bootstrap-server", kafka.bootstrap, "--describe", "--group", group
    )
    rows = [line.split() for line in described.splitlines() if f" {raw} " in f" {line} "]
    tool_lag = {int(row[2]): int(row[5]) for row in rows}
    settings = Settings(kafka_bootstrap=kafka.bootstrap, raw_topic=raw)
    ours = await group_lag(settings, group)
    assert tool_lag == {p: end - committed for p, (committed, end) in ours.items()}
    assert sum(tool_lag.values()) == 2 * LATER
    report = await lag_report(kafka.bootstrap, raw, group)
    assert f"total lag: {2 * LATER}" in report, report


async def test_a_reset_to_datetime_and_a_replay_from_time_start_alike(kafka, pipeline_run):
    env, between = pipeline_run
    group, raw = env["STREAMPROC_APP_ID"], env["STREAMPROC_RAW_TOPIC"]
    stamp = between.strftime("%Y-%m-%dT%H:%M:%S.") + f"{between.microsecond // 1000:03d}Z"
    planned = await asyncio.to_thread(
        run_tool,
        GROUP_TOOL,
        "--bootstrap-server",
        kafka.bootstrap,
        "--group",
        group,
        "--topic",
        raw,
        "--reset-offsets",
        "--to-datetime",
        stamp,
        "--dry-run",
    )
    rows = [line.split() for line in planned.splitlines() if f" {raw} " in f" {line} "]
    tool_starts = {int(row[2]): int(row[3]) for row in rows}
    result = await replay(
        Settings.from_env(env), ReplayRange(from_time=between), dry_run=True, progress=False
    )
    try:
        assert tool_starts == result.starts
        assert sum(result.starts.values()) > 0 and len(tool_starts) == 4
    finally:
        result.close()

"""Replays fold the real raw log again: same ids and values each time, from any point."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamproc.core import schemas
from streamproc.core.fold import fold
from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.replay.run import ReplayRange, current_statuses, replay, status_changes
from streamproc.settings import Settings

from helpers import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


def daily(kind: str, recording: str, event_ts: int) -> bytes:
    payload: dict = {"recording_id": recording, "start_ts": 1000}
    if kind == "recording.ready-to-download":
        payload |= {"status": "finished", "s3_key": f"{recording}.mp4"}
    return orjson.dumps(
        {
            "version": "1.0.0",
            "type": kind,
            "id": f"{kind}-{recording}",
            "payload": payload,
            "event_ts": event_ts,
        }
    )


@pytest.fixture(scope="module")
async def log(broker):
    """A one-partition raw log written in two phases, with the time between them."""
    prefix = f"replay-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        raw_topic=f"{prefix}.raw",
        state_topic=f"{prefix}.state",
        lifecycle_topic=f"{prefix}.lifecycle",
        fetch_topic=f"{prefix}.fetch",
    )
    await ensure_topics(broker.bootstrap, [TopicSpec(settings.raw_topic, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()

    async def write(bodies):
        for body in bodies:
            await producer.send_and_wait(settings.raw_topic, body, headers=[("provider", b"daily")])

    try:
        await write([daily("recording.started", f"r{i}", 1000) for i in range(5)])
        await write([b"not json"])
        await write([daily("recording.ready-to-download", f"r{i}", 1100) for i in range(3)])
        await asyncio.sleep(1.0)
        between = datetime.now(UTC)
        await asyncio.sleep(1.0)
        await write([daily("recording.ready-to-download", f"r{i}", 1200) for i in (3, 4)])
        await write([daily("recording.started", "r5", 1300)])
    finally:
        await producer.stop()
    return {"settings": settings, "between": between, "phase_two_offset": 9}


async def test_replaying_from_zero_twice_writes_identical_output(log, broker):
    settings = log["settings"]
    first = await replay(settings, ReplayRange(), output_suffix="a", progress=False)
    second = await replay(settings, ReplayRange(), output_suffix="b", progress=False)
    dry = await replay(settings, ReplayRange(), dry_run=True, progress=False)
    assert first.emitted == second.emitted == []  # written as they went
    assert first.counts == second.counts and first.counts["unusable"] == 1
    for topic in (settings.state_topic, settings.lifecycle_topic):
        records_a = await read_topic(broker.bootstrap, f"{topic}.a", expect=1)
        records_b = await read_topic(broker.bootstrap, f"{topic}.b", expect=1)
        assert [(r.key, r.value) for r in records_a] == [(r.key, r.value) for r in records_b]
        assert records_a
        # what a dry run says it would write, per key and in order
        would = [(k, v) for t, k, v in dry.emitted if t == topic]
        assert sorted(would) == sorted((r.key, r.value) for r in records_a)
    lifecycle_a = await read_topic(broker.bootstrap, f"{settings.lifecycle_topic}.a", expect=1)
    completed = [
        message["recording_id"]
        for message in (orjson.loads(r.value) for r in lifecycle_a)
        if message["type"] == "recording.completed"
    ]
    assert sorted(completed) == ["r0", "r1", "r2", "r3", "r4"]


def _lifecycle(result, settings) -> list[tuple[str, str | None, str]]:
    return [
        (m["recording_id"], m["from_status"], m["to_status"])
        for t, _, value in result.emitted
        if t.startswith(settings.lifecycle_topic) and (m := orjson.loads(value))
    ]


EXPECTED_PHASE_TWO = [
    ("r3", "active", "finished"),
    ("r4", "active", "finished"),
    ("r5", None, "active"),
]


async def test_replay_from_a_middle_offset_starts_from_the_state_before_it(log):
    settings = log["settings"]
    selection = ReplayRange(from_offset=log["phase_two_offset"])
    result = await replay(settings, selection, dry_run=True, progress=False)
    assert _lifecycle(result, settings) == EXPECTED_PHASE_TWO
    assert result.states["r0"].status == "finished"  # folded, not emitted


async def test_replay_from_a_time_equals_replay_from_its_offset(log):
    settings = log["settings"]
    result = await replay(
        settings, ReplayRange(from_time=log["between"]), dry_run=True, progress=False
    )
    assert _lifecycle(result, settings) == EXPECTED_PHASE_TWO
    future = datetime(2100, 1, 1, tzinfo=UTC)
    nothing = await replay(settings, ReplayRange(from_time=future), dry_run=True, progress=False)
    assert nothing.emitted == []


async def test_to_offset_stops_the_replay(log):
    settings = log["settings"]
    result = await replay(settings, ReplayRange(to_offset=4), dry_run=True, progress=False)
    assert sorted(result.states) == ["r0", "r1", "r2", "r3", "r4"]
    assert {s.status for s in result.states.values()} == {"active"}


async def test_dry_run_after_a_fold_change_reports_the_difference(log, broker):
    settings = log["settings"]
    await replay(settings, ReplayRange(), progress=False)  # the live state topic
    before = await current_statuses(settings)
    assert before["r5"] == "active"

    def fold_that_finishes_active(state, event, *positions):
        if event.status == "active":
            event = dataclasses.replace(event, status="finished")
        return fold(state, event, *positions)

    result = await replay(
        settings, ReplayRange(), dry_run=True, fold_fn=fold_that_finishes_active, progress=False
    )
    assert status_changes(before, result.states) == [("r5", "active", "finished")]
    assert await current_statuses(settings) == before  # a dry run writes nothing


def _replay_command(settings: Settings, *arguments: str, state_topic: str | None = None):
    """``streamproc ...`` as a user runs it, against the ``log`` fixture's topics."""
    env = {
        **os.environ,
        "STREAMPROC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "STREAMPROC_RAW_TOPIC": settings.raw_topic,
        "STREAMPROC_STATE_TOPIC": state_topic or settings.state_topic,
    }
    return subprocess.run(
        [sys.executable, "-m", "streamproc", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_command_prints_the_dry_run_report(log):
    result = _replay_command(log["settings"], "replay", "--dry-run", "--from-offset", "9")
    assert result.returncode == 0, result.stderr
    assert "replayed 12 records: 3 folded into outputs" in result.stdout
    assert "would change status" in result.stdout
    # Only its answer: the progress lines on stderr, no library's log lines.
    assert result.stderr.splitlines(), "no progress shown"
    assert all(line.startswith("replay: ") for line in result.stderr.splitlines()), result.stderr


def test_replay_logs_json_lines_when_asked(log):
    result = _replay_command(log["settings"], "-v", "--log-format", "json", "replay", "--dry-run")
    assert result.returncode == 0, result.stderr
    records = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(record["logger"].startswith("aiokafka") for record in records)  # -v: libraries too
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)


def test_replay_names_a_missing_state_topic_without_a_traceback(log):
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    result = _replay_command(log["settings"], "replay", "--dry-run", state_topic=missing)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "replay failed: topic 'missing-" in result.stderr


async def test_replay_joins_errors_named_by_instance_like_the_worker(broker):
    """An error before its start is held and applied once the start names the recording; an
    error whose instance never starts is reported, never folded as a recording of its own."""
    prefix = f"replay-join-{uuid.uuid4().hex[:6]}"
    settings = Settings(kafka_bootstrap=broker.bootstrap, raw_topic=f"{prefix}.raw")
    await ensure_topics(broker.bootstrap, [TopicSpec(settings.raw_topic, 2)])

    def error(instance: str, at: int = 1010) -> bytes:
        payload = {"instance_id": instance, "error_msg": "boom", "room_name": "r"}
        document = {"version": "1.0.0", "type": "recording.error", "id": f"err-{instance}"}
        return orjson.dumps(document | {"payload": payload, "event_ts": at})

    started = orjson.loads(daily("recording.started", "rec-x", 1000))
    started["payload"]["instance_id"] = "inst-x"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        daily_header = [("provider", b"daily")]
        bodies = [
            (0, error("inst-x")),
            (1, orjson.dumps(started)),
            (0, error("inst-never")),
            (1, error("inst-recent", at=1010 + 500)),
            (1, error("inst-later", at=1010 + 700)),
            (0, error("inst-later-0", at=1010 + 700)),  # both partitions 700 s on: overdue
        ]
        for partition, body in bodies:
            await producer.send_and_wait(
                settings.raw_topic, body, partition=partition, headers=daily_header
            )
    finally:
        await producer.stop()
    result = await replay(settings, ReplayRange(), dry_run=True, progress=False)
    assert {rid: state.status for rid, state in result.states.items()} == {"rec-x": "failed"}
    assert result.states["rec-x"].error == "boom"
    assert sorted(result.held) == ["inst-later", "inst-later-0", "inst-never", "inst-recent"]
    announced = [
        orjson.loads(value)
        for topic, _, value in result.emitted
        if topic == settings.lifecycle_topic
    ]
    assert [
        (m["recording_id"], m["error"]) for m in announced if m["type"] == "recording.failed"
    ] == [("rec-x", "boom")]
    started_failures = [m for m in announced if m["type"] == "recording.start-failed"]
    assert [(m["instance_id"], m["recording_id"], m["error"]) for m in started_failures] == [
        ("inst-never", None, "boom")
    ]
    assert schemas.first_error("derived/lifecycle.json", started_failures[0]) is None

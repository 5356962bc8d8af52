"""A stalled recording is reported identically by the live worker and by a replay."""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamproc.kafka.partitions import partition_for
from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.local.processes import stop_process
from streamproc.replay.run import ReplayRange, replay
from streamproc.settings import Settings

from helpers import start_worker, wait_for_messages, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]
PARTITIONS = 4
T0 = 1_700_000_000
HOURS = 3600


def daily(kind: str, recording: str, at: int) -> bytes:
    payload: dict = {"recording_id": recording, "room_name": "stall-room", "start_ts": at}
    if kind == "recording.ready-to-download":
        payload |= {"status": "finished", "s3_key": f"{recording}.mp4", "duration": 5}
    document = {"version": "1.0.0", "type": kind, "id": f"{kind}-{recording}"}
    return orjson.dumps(document | {"payload": payload, "event_ts": at})


def names() -> dict[str, str]:
    """Ids on one partition P (a, b, and m, which another producer keys wrongly, under a key
    on a partition below P), and c on another partition."""
    by_partition: dict[int, list[str]] = {}
    for index in range(200):
        name = f"st-{index}"
        by_partition.setdefault(partition_for(name.encode(), PARTITIONS), []).append(name)
    p = max(by_partition)
    a, b, m = by_partition[p][:3]
    [wrong_key] = [
        f"key-{i}" for i in range(50) if partition_for(f"key-{i}".encode(), PARTITIONS) < p
    ][:1]
    c = by_partition[min(by_partition)][0]
    return {"a": a, "b": b, "m": m, "c": c, "wrong_key": wrong_key}


async def test_a_stalled_recording_is_reported_alike_live_and_in_replay(broker, tmp_path):
    ids = names()
    prefix = f"stall-{uuid.uuid4().hex[:6]}"
    env = worker_env(broker.bootstrap, "http://127.0.0.1:9", prefix, tmp_path / "downloads")
    settings = Settings.from_env(env)
    await ensure_topics(broker.bootstrap, [TopicSpec(settings.raw_topic, PARTITIONS)])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()

    async def send(body: bytes, key: str) -> None:
        await producer.send_and_wait(
            settings.raw_topic, body, key=key.encode(), headers=[("provider", b"daily")]
        )

    worker = start_worker(env, tmp_path / "worker.log")
    try:
        await send(daily("recording.started", ids["a"], T0), ids["a"])
        await send(daily("recording.started", ids["m"], T0), ids["wrong_key"])
        # m goes round through the re-keyed topic: let it land before time moves on.
        await wait_for_messages(
            broker.bootstrap,
            settings.state_topic,
            lambda found: {ids["a"], ids["m"]} <= {s["recording_id"] for s in found},
        )
        await send(daily("recording.started", ids["c"], T0), ids["c"])
        await send(daily("recording.started", ids["b"], T0 + 7 * HOURS), ids["b"])
        await send(daily("recording.ready-to-download", ids["a"], T0 + 7 * HOURS + 60), ids["a"])
        live = await wait_for_messages(
            broker.bootstrap, settings.lifecycle_topic, lambda found: len(found) >= 7
        )
    finally:
        await producer.stop()
        stop_process(worker.process)

    transitions = {(m["recording_id"], m["to_status"]) for m in live}
    assert transitions == {
        (ids["a"], "active"),
        (ids["a"], "stalled"),
        (ids["a"], "finished"),
        (ids["m"], "active"),
        (ids["m"], "stalled"),
        (ids["b"], "active"),
        (ids["c"], "active"),  # its partition's clock never moved on
    }
    stalled = [m for m in live if m["type"] == "recording.stalled"]
    assert {(m["occurred_at"], m["caused_by"]) for m in stalled} == {
        (T0 + 6 * HOURS, f"recording.started-{ids['b']}")
    }
    result = await replay(settings, ReplayRange(), dry_run=True, progress=False)
    replayed = [
        orjson.loads(value)
        for topic, _, value in result.emitted
        if topic == settings.lifecycle_topic
    ]
    assert sorted(replayed, key=lambda m: m["event_id"]) == sorted(
        live, key=lambda m: m["event_id"]
    )
    assert {rid: s.status for rid, s in result.states.items()} == {
        ids["a"]: "finished",
        ids["m"]: "stalled",
        ids["b"]: "active",
        ids["c"]: "active",
    }

"""Batching and direct delivery are only speed-ups: a worker folding 500 events at a time,
with or without STREAMPROC_DIRECT_DELIVERY, publishes exactly the bytes a worker folding one
at a time publishes, key by key, in the same order, for OpenVidu's events and Daily's
(started twice, ready-to-download, errors naming their recording). A Daily error that names
only its instance meets its recording through the join and the re-keyed topic, whose timing
no batch size decides (docs/replay.md): for those recordings the final states are equal."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.local.processes import stop_process

from helpers import read_topic, start_worker, wait_for_messages, worker_env

pytestmark = pytest.mark.integration
RECORDINGS = 120
DAILY_RECORDINGS = 60
T = 1_700_000_000


def openvidu(recording: str, status: str, at_ms: int) -> bytes:
    event = "recordingStarted" if status == "STARTING" else "recordingUpdated"
    data = {"recordingId": recording, "roomId": "batch-room", "status": status, "startDate": at_ms}
    return orjson.dumps({"creationDate": at_ms, "event": event, "data": data})


def raw_events() -> list[tuple[bytes, bytes]]:
    """Each recording's events out of order and some twice, recordings interleaved."""
    rng = random.Random(20261201)
    events = []
    for index in range(RECORDINGS):
        recording = f"batch-{index:03d}"
        steps = ["STARTING", "ACTIVE", "ENDING", "FAILED"][: rng.randint(1, 4)]
        mine = [
            (recording, openvidu(recording, s, 1_700_000_000_000 + i)) for i, s in enumerate(steps)
        ]
        mine += rng.sample(mine, k=rng.randint(0, len(mine)))
        rng.shuffle(mine)
        events.append(mine)
    merged = []
    while any(events):
        queue = rng.choice([q for q in events if q])
        merged.append(queue.pop(0))
    return [(key.encode(), body) for key, body in merged]


def daily(kind: str, event_id: str, at: int, **payload: object) -> bytes:
    document = {"version": "1.0.0", "type": kind, "id": event_id, "event_ts": at}
    return orjson.dumps(document | {"payload": {"room_name": "batch-room", **payload}})


def daily_events() -> list[tuple[bytes, bytes]]:
    """Per recording, in the order Daily sends them: started twice then ready-to-download;
    started then an error naming the recording; or an error naming only the instance
    (keyed by it, as the edge keys it) before or after the started that links it."""
    rng = random.Random(20261205)
    events = []
    for index in range(DAILY_RECORDINGS):
        recording, instance = f"daily-{index:03d}", f"instance-{index:03d}"
        ids = {"recording_id": recording, "instance_id": instance}
        started = daily("recording.started", f"{recording}-s", T + index, **ids)
        if index % 3 == 0:
            again = daily("recording.started", f"{recording}-s2", T + index, **ids)
            ready = daily(
                "recording.ready-to-download",
                f"{recording}-r",
                T + index + 60,
                **ids,
                s3_key=f"{recording}.mp4",
                status="finished",
            )
            events += [(recording, started), (recording, again), (recording, ready)]
        elif index % 3 == 1:
            error = daily("recording.error", f"{recording}-e", T + index + 30, **ids, error_msg="x")
            events += [(recording, started), (recording, error)]
        else:
            error = daily(
                "recording.error", f"{recording}-e", T + index, instance_id=instance, error_msg="y"
            )
            pair = [(recording, started), (instance, error)]
            events += pair if rng.random() < 0.5 else pair[::-1]
    return [(key.encode(), body) for key, body in events]


def joined(recording: str) -> bool:
    """A recording whose error came through the instance join."""
    return recording.startswith("daily-") and int(recording[-3:]) % 3 == 2


async def outputs(broker, tmp_path, env: dict, topics: list[str]) -> dict[str, dict[bytes, list]]:
    worker = start_worker(env, tmp_path / f"worker-{env['STREAMPROC_APP_ID']}.log")
    try:
        await wait_for_messages(
            broker.bootstrap,
            env["STREAMPROC_STATE_TOPIC"],
            lambda found: (
                {m["recording_id"] for m in found} >= ALL_RECORDINGS
                and sum(m["events_applied"] for m in _latest(found).values()) == EXPECTED_APPLIED
            ),
            timeout_s=120,
        )
    finally:
        stop_process(worker.process)
    by_topic = {}
    for name in topics:
        by_key: dict[bytes, list[bytes]] = defaultdict(list)
        for record in await read_topic(broker.bootstrap, env[name]):
            by_key[record.key].append(record.value)
        by_topic[name] = dict(by_key)
    return by_topic


def _latest(found: list[dict]) -> dict[str, dict]:
    return {m["recording_id"]: m for m in found}


RAW = [(key, b"openvidu", body) for key, body in raw_events()]
RAW += [(key, b"daily", body) for key, body in daily_events()]
EXPECTED_APPLIED = len({body for _, _, body in RAW})
ALL_RECORDINGS = {f"batch-{i:03d}" for i in range(RECORDINGS)} | {
    f"daily-{i:03d}" for i in range(DAILY_RECORDINGS)
}


def unjoined(by_key: dict[bytes, list[bytes]]) -> dict[bytes, list[bytes]]:
    """The messages of recordings that met no event through the join."""
    return {key: values for key, values in by_key.items() if not joined(key.decode())}


def final_joined(by_key: dict[bytes, list[bytes]]) -> dict[bytes, bytes]:
    """The final state of each recording that met an event through the join."""
    return {
        key: max(values, key=lambda value: orjson.loads(value)["events_applied"])
        for key, values in by_key.items()
        if joined(key.decode())
    }


async def test_a_batched_worker_publishes_what_a_one_at_a_time_worker_does(broker, tmp_path):
    prefix = f"batch-{uuid.uuid4().hex[:6]}"
    base = worker_env(broker.bootstrap, "http://127.0.0.1:9", f"{prefix}-1", tmp_path / "sink")
    await ensure_topics(broker.bootstrap, [TopicSpec(base["STREAMPROC_RAW_TOPIC"], 4)])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, provider, body in RAW:
            await producer.send(
                base["STREAMPROC_RAW_TOPIC"], body, key=key, headers=[("provider", provider)]
            )
        await producer.flush()
    finally:
        await producer.stop()
    topics = ["STREAMPROC_STATE_TOPIC", "STREAMPROC_LIFECYCLE_TOPIC"]
    results = []
    for batch, name, direct in [("1", "one", "0"), ("500", "many", "0"), ("500", "direct", "1")]:
        env = worker_env(
            broker.bootstrap,
            "http://127.0.0.1:9",
            f"{prefix}-{name}",
            tmp_path / f"sink-{name}",
            STREAMPROC_RAW_TOPIC=base["STREAMPROC_RAW_TOPIC"],
            STREAMPROC_FOLD_BATCH=batch,
            STREAMPROC_DIRECT_DELIVERY=direct,
        )
        results.append(await outputs(broker, tmp_path, env, topics))
    one, many, direct = results
    assert len(one["STREAMPROC_LIFECYCLE_TOPIC"]) == RECORDINGS + DAILY_RECORDINGS
    for other in (many, direct):
        for topic in topics:
            assert unjoined(one[topic]) == unjoined(other[topic])
        assert final_joined(one["STREAMPROC_STATE_TOPIC"]) == final_joined(
            other["STREAMPROC_STATE_TOPIC"]
        )
    finals = final_joined(one["STREAMPROC_STATE_TOPIC"])
    assert len(finals) == DAILY_RECORDINGS // 3
    assert all(orjson.loads(state)["error"] == "y" for state in finals.values())

"""Batching and direct delivery are only speed-ups: a worker folding 500 events at a time,
with or without STREAMPROC_DIRECT_DELIVERY, publishes exactly the bytes a worker folding one
at a time publishes, key by key, in the same order."""

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


async def outputs(broker, tmp_path, env: dict, topics: list[str]) -> dict[str, dict[bytes, list]]:
    worker = start_worker(env, tmp_path / f"worker-{env['STREAMPROC_APP_ID']}.log")
    try:
        await wait_for_messages(
            broker.bootstrap,
            env["STREAMPROC_STATE_TOPIC"],
            lambda found: (
                {m["recording_id"] for m in found} >= {f"batch-{i:03d}" for i in range(RECORDINGS)}
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


RAW = raw_events()
EXPECTED_APPLIED = len({body for _, body in RAW})


async def test_a_batched_worker_publishes_what_a_one_at_a_time_worker_does(broker, tmp_path):
    prefix = f"batch-{uuid.uuid4().hex[:6]}"
    base = worker_env(broker.bootstrap, "http://127.0.0.1:9", f"{prefix}-1", tmp_path / "sink")
    await ensure_topics(broker.bootstrap, [TopicSpec(base["STREAMPROC_RAW_TOPIC"], 4)])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, body in RAW:
            await producer.send(
                base["STREAMPROC_RAW_TOPIC"], body, key=key, headers=[("provider", b"openvidu")]
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
    assert len(one["STREAMPROC_LIFECYCLE_TOPIC"]) == RECORDINGS
    assert one == many
    assert one == direct

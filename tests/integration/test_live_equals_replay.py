"""What the worker derived live, a replay from offset 0 derives again, byte for byte: state,
lifecycle (failed starts and stalls included) and fetch requests, on the real brokers.

The log is the one a new user met in issue 31: Daily's error for an instance, the other
recordings' events eleven minutes of event time later on every partition, then the
instance's ``recording.started`` at twelve minutes. The worker and the replay both announce
the failed start, since both decide it from the raw partitions' marks.
"""

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

from helpers import read_topic, start_worker, wait_for_messages, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]
PARTITIONS = 4
T = 1_700_000_000
STALL_AFTER_S = 1800


def daily(kind: str, event_id: str, at: int, **payload: object) -> bytes:
    document = {"version": "1.0.0", "type": kind, "id": event_id, "event_ts": at}
    return orjson.dumps(document | {"payload": {"room_name": "eq-room", **payload}})


def one_key_per_partition(prefix: str) -> list[str]:
    found: dict[int, str] = {}
    for index in range(1000):
        found.setdefault(
            partition_for(f"{prefix}-{index}".encode(), PARTITIONS), f"{prefix}-{index}"
        )
    return [found[partition] for partition in range(PARTITIONS)]


def raw_log() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(key, value) as the edge writes them: by recording id, or by instance id for an error
    that names only its instance; in two parts, the second an hour of event time later."""
    started, ready, error = "recording.started", "recording.ready-to-download", "recording.error"
    log = [
        ("inst-x", daily(error, "err-x", T, instance_id="inst-x", error_msg="no start")),
        ("inst-y", daily(error, "err-y", T, instance_id="inst-y", error_msg="boom")),
        ("rec-y", daily(started, "sta-y", T + 60, recording_id="rec-y", instance_id="inst-y")),
        ("rec-a", daily(started, "sta-a", T, recording_id="rec-a")),  # stalls
        ("rec-f", daily(started, "sta-f", T, recording_id="rec-f")),
        (
            "rec-f",
            daily(ready, "rtd-f", T + 120, recording_id="rec-f", s3_key="f.mp4", status="finished"),
        ),
    ]
    log += [
        (key, daily(started, key, T + 660, recording_id=key))
        for key in one_key_per_partition("eleven")
    ]
    log.append(
        ("rec-x", daily(started, "sta-x", T + 720, recording_id="rec-x", instance_id="inst-x"))
    )
    an_hour_later = [
        (key, daily(started, key, T + 3600, recording_id=key))
        for key in one_key_per_partition("hour")
    ]
    return log, an_hour_later


def by_id(records: list, topic: str) -> dict[tuple, bytes]:
    """Messages by what a consumer de-duplicates them by."""
    found = {}
    for record in records:
        message = orjson.loads(record.value)
        if topic == "state":
            key = (message["recording_id"], message["updated_by"])
        elif topic == "fetch":
            key = (message["request_id"],)
        else:
            key = (message["event_id"],)
        assert found.setdefault(key, record.value) == record.value, key
    return found


async def test_a_replay_from_offset_zero_writes_what_the_worker_wrote(broker, tmp_path):
    prefix = f"eq-{uuid.uuid4().hex[:6]}"
    env = worker_env(
        broker.bootstrap,
        "http://127.0.0.1:9",
        prefix,
        tmp_path / "downloads",
        STREAMPROC_STALL_AFTER_S=str(STALL_AFTER_S),
    )
    settings = Settings.from_env(env)
    await ensure_topics(broker.bootstrap, [TopicSpec(settings.raw_topic, PARTITIONS)])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        first, an_hour_later = raw_log()
        for key, value in first:
            await producer.send_and_wait(
                settings.raw_topic, value, key=key.encode(), headers=[("provider", b"daily")]
            )
        # The errors the join releases reach rec-x and rec-y through the re-keyed topic; the
        # worker folds them when it reads that topic, and a replay right after the start.
        # Let them land before event time jumps an hour (else rec-x stalls live first: the one
        # difference the derivation documents, derivation/step.py).
        await wait_for_messages(
            broker.bootstrap,
            settings.lifecycle_topic,
            lambda found: (
                {"rec-x", "rec-y"}
                <= {m["recording_id"] for m in found if m["type"] == "recording.failed"}
            ),
        )
        for key, value in an_hour_later:
            await producer.send_and_wait(
                settings.raw_topic, value, key=key.encode(), headers=[("provider", b"daily")]
            )
        live = await wait_for_messages(
            broker.bootstrap,
            settings.lifecycle_topic,
            lambda found: len({m["event_id"] for m in found}) >= 21,
        )
    finally:
        await producer.stop()
        stop_process(worker.process)

    transitions = {(m["recording_id"] or m["instance_id"], m["type"]) for m in live}
    assert {
        ("inst-x", "recording.start-failed"),
        ("rec-x", "recording.failed"),
        ("rec-y", "recording.failed"),
        ("rec-a", "recording.stalled"),
        ("rec-f", "recording.completed"),
    } <= transitions
    assert ("inst-y", "recording.start-failed") not in transitions  # started within the grace

    result = await replay(settings, ReplayRange(), output_suffix="eq", progress=False)
    result.close()
    topics = {
        "state": settings.state_topic,
        "lifecycle": settings.lifecycle_topic,
        "fetch": settings.fetch_topic,
    }
    for kind, topic in topics.items():
        written_live = by_id(await read_topic(broker.bootstrap, topic), kind)
        replayed = by_id(await read_topic(broker.bootstrap, f"{topic}.eq", len(written_live)), kind)
        assert replayed == written_live, kind

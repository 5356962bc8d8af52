"""``streamproc status`` against a bare bootstrap: topics, lag, recordings and dead letters."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.local.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


def _status(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamproc", "status", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_status_reads_a_bare_bootstrap(broker, tmp_path):
    prefix = f"status-{uuid.uuid4().hex[:6]}"
    names = {role: f"{prefix}.{role}" for role in ("raw", "state", "downloads", "dlq", "fetch")}
    names["retry"] = f"{prefix}-app-fetch-retry-1"  # fetch requests waiting 60 s
    await ensure_topics(broker.bootstrap, [TopicSpec(name, 2) for name in names.values()])
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for index in range(5):
            await producer.send(names["raw"], b"{}", key=b"r%d" % index)
        for rid, status in [("r1", "active"), ("r1", "finished"), ("r2", "failed")]:
            state = orjson.dumps({"recording_id": rid, "status": status})
            await producer.send(names["state"], state, key=rid.encode())
        await producer.send(names["downloads"], orjson.dumps({"event_id": "e1"}), key=b"r1")
        letter = {"stage": "fetch", "reason": "NoSuchKey", "event_id": "e2"}
        letter["dead_lettered_at"] = "t"
        await producer.send(names["dlq"], orjson.dumps(letter), key=b"r2")
        await producer.send(names["dlq"], b"not json", key=b"r3")
        for rid in (b"r4", b"r5"):
            await producer.send(names["retry"], b"{}", key=rid)
        await producer.flush()
    finally:
        await producer.stop()
    env = {
        **os.environ,
        "STREAMPROC_KAFKA_BOOTSTRAP": broker.bootstrap,
        "STREAMPROC_APP_ID": f"{prefix}-app",
        "STREAMPROC_RAW_TOPIC": names["raw"],
        "STREAMPROC_STATE_TOPIC": names["state"],
        "STREAMPROC_LIFECYCLE_TOPIC": f"{prefix}.lifecycle-never-created",
        "STREAMPROC_DOWNLOADS_TOPIC": names["downloads"],
        "STREAMPROC_DLQ_TOPIC": names["dlq"],
        "STREAMPROC_FETCH_TOPIC": names["fetch"],
        "STREAMPROC_FETCH_RETRY_DELAYS_S": "60",
        "STREAMPROC_EDGE_PORT": str(free_port()),
        "STREAMPROC_WORKER_WEB_PORT": str(free_port()),
    }
    result = _status(env, "--json")
    assert result.returncode == 0, result.stderr
    status = orjson.loads(result.stdout)
    topics = {t["role"]: t for t in status["topics"]}
    assert topics["raw"] == {"role": "raw", "topic": names["raw"], "messages": 5, "lag": 5}
    assert topics["lifecycle"]["messages"] == 0
    assert status["recordings"] == {"failed": 1, "finished": 1}
    assert (status["downloads"], status["download_failures"], status["dead_letters"]) == (1, 1, 2)
    assert (status["retries_waiting"], status["dead_letters_by_stage"]) == (2, {"fetch": 1})
    assert topics["retry in 60s"]["messages"] == 2
    assert status["newest_dead_letters"] == [
        {"dead_lettered_at": "t", "stage": "fetch", "reason": "NoSuchKey"}
    ]
    assert status["edge"].startswith("unreachable")
    assert status["worker"].startswith("unreachable")
    assert result.stderr == ""

    text = _status(env)
    assert text.returncode == 0, text.stderr
    assert "recordings      : 2  (failed=1, finished=1)" in text.stdout
    assert "retries waiting : 2" in text.stdout
    assert "dead letters    : 2  (fetch=1)" in text.stdout
    assert "fetch: NoSuchKey" in text.stdout


def test_status_names_an_unreachable_broker_without_a_traceback():
    env = {**os.environ, "STREAMPROC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    result = _status(env)
    assert result.returncode == 1
    assert "cannot read Kafka at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr

"""Signed webhooks -> edge -> raw topic -> worker -> derived topics and downloaded files.

Everything is real: HTTP to the edge process, the Tansu broker, the Faust worker process,
moto's S3 server; the derived topics are read back with a plain aiokafka consumer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import DefaultPartitioner

from streamproc.core import schemas
from streamproc.local.processes import free_port, stop_process

from helpers import (
    REPO,
    broker_name,
    example,
    leaked_secrets,
    messages,
    read_topic,
    signed,
    start_edge,
    start_worker,
    wait_for_messages,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

DAILY_CLOUD = "api-test-1j8fizhzd30c/Xcm97xRZ08b2dePKb78g/1692124183028"
DAILY_TRACKS = [
    "api-test-1j8fizhzd30c/raw-tracks-room/1692124900000-cam-video.webm",
    "api-test-1j8fizhzd30c/raw-tracks-room/1692124900000-cam-audio.webm",
]
OPENVIDU_KEY = "room-123/room-123--XX445.mp4"
HUGE = b'{"type": "recording.started", "padding": "' + b"x" * (5 * 1024 * 1024) + b'"}'
"""A 5 MiB record another producer wrote: too big for any event, still dead-lettered whole."""


def _with(document: bytes, **changes) -> bytes:
    data = orjson.loads(document)
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return orjson.dumps(data)


PARTITIONS = 4
"""The raw topic's (and so the instances topic's) partition count in these tests."""


def _one_per_partition(partitions: int) -> list[str]:
    """Instance ids that the producer's partitioner (murmur2, as Kafka's and Faust's) puts
    one on each partition: a failed start is decided once every raw partition's event time
    has passed its grace."""
    partition_of = DefaultPartitioner()
    found: dict[int, str] = {}
    for index in range(1000):
        candidate = f"inst-later-{index}"
        every = list(range(partitions))
        found.setdefault(partition_of(candidate.encode(), every, every), candidate)
        if len(found) == partitions:
            return [found[partition] for partition in range(partitions)]
    raise AssertionError("no instance id for some partition")


def _states_and_join_settled(states: dict, recordings: dict) -> bool:
    cloud = states.get("08fa0b24-9220-44c5-846c-3f116cf8e738", {})
    statuses = {k: v["status"] for k, v in states.items()}
    return statuses == recordings and cloud.get("events_applied") == 3


@pytest.fixture(scope="module")
def stack(broker, s3_endpoint, tmp_path_factory):
    prefix = f"e2e-{uuid.uuid4().hex[:6]}"
    root = tmp_path_factory.mktemp(prefix)
    env = worker_env(broker.bootstrap, s3_endpoint, prefix, root / "downloads")
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = env["STREAMPROC_S3_BUCKET"]
    s3.create_bucket(Bucket=bucket)
    objects = {DAILY_CLOUD: b"cloud" * 300_000, OPENVIDU_KEY: b"openvidu-mp4" * 1000}
    # Sizes as announced in the raw-tracks example; a mismatch would be dead-lettered.
    objects.update(
        {
            key: bytes([index]) * size
            for index, (key, size) in enumerate(zip(DAILY_TRACKS, (182734, 40211), strict=True))
        }
    )
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")
    edge = start_edge(broker.bootstrap, env["STREAMPROC_RAW_TOPIC"], root / "edge.log")
    worker = start_worker(env, root / "worker.log")
    try:
        yield {"env": env, "edge": edge, "worker": worker, "objects": objects, "root": root}
    finally:
        stop_process(edge.process)
        stop_process(worker.process)


async def _allow_records_of(size: int, bootstrap: str, topic: str) -> None:
    """Kafka refuses a record over a topic's ``max.message.bytes`` (1 MiB by default; Tansu
    takes any size): raise it, as an operator whose producers write large records would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        limit = {"max.message.bytes": str(size)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, limit)])
    finally:
        await admin.close()


async def _post(edge, provider: str, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        response = await client.post(
            f"/webhooks/{provider}", content=body, headers=signed(provider, body)
        )
    assert response.status_code == 200, response.text


async def test_webhooks_become_state_lifecycle_and_verified_downloads(stack, broker):
    env, edge = stack["env"], stack["edge"]
    bootstrap = broker.bootstrap
    daily_started = example("daily", "recording.started")
    daily_ready = example("daily", "recording.ready-to-download")
    raw_tracks = example("daily", "recording.ready-to-download.raw-tracks")
    # Daily's error names only the instance: it is joined to the recording that instance
    # started (08fa0b24, which also finished: the file wins), and a second instance's error,
    # sent before its start, fails that recording once the start arrives.
    failing = _with(example("daily", "recording.error"), id="err-1")
    early_error = _with(
        example("daily", "recording.error"), id="err-2", payload__instance_id="inst-failing"
    )
    never_started = _with(
        example("daily", "recording.error"), id="err-3", payload__instance_id="inst-never"
    )
    an_hour_later = [
        _with(
            example("daily", "recording.error"),
            id=f"err-4-{instance}",
            payload__instance_id=instance,
            event_ts=orjson.loads(example("daily", "recording.error"))["event_ts"] + 3600,
        )
        for instance in _one_per_partition(PARTITIONS)
    ]
    late_start = _with(
        daily_started,
        id="sta-failing",
        payload__recording_id="rec-failing",
        payload__instance_id="inst-failing",
    )
    missing_file = _with(
        daily_ready,
        id="rtd-missing",
        payload__recording_id="rec-no-file",
        payload__s3_key="gone.mp4",
    )
    ov_started = example("openvidu", "recordingStarted")
    ov_updated = example("openvidu", "recordingUpdated")
    ov_ended = example("openvidu", "recordingEnded")
    # Out of order (ready before started, ended before updated) and duplicated.
    for provider, body in [
        ("daily", daily_ready),
        ("openvidu", ov_started),
        ("openvidu", ov_ended),
        ("daily", daily_started),
        ("openvidu", ov_updated),
        ("daily", raw_tracks),
        ("daily", failing),
        ("daily", early_error),
        ("daily", late_start),
        # An instance that never starts, and errors on every raw partition an hour of event
        # time later: the first is then announced as a failed start attempt.
        ("daily", never_started),
        *[("daily", body) for body in an_hour_later],
        ("daily", daily_ready),
        ("daily", missing_file),
    ]:
        await _post(edge, provider, body)
    # An internal producer writes straight to the raw topic: garbage, a wrong shape, and a
    # valid event keyed by something else than its recording id.
    if broker_name(broker) == "kafka":
        await _allow_records_of(2 * len(HUGE), bootstrap, env["STREAMPROC_RAW_TOPIC"])
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=2 * len(HUGE)
    )
    await producer.start()
    try:
        raw_topic = env["STREAMPROC_RAW_TOPIC"]
        await producer.send_and_wait(raw_topic, b"\x00\xffnot json", key=b"junk")
        wrong_shape = b'{"type": "recording.started", "id": "s", "payload": {}}'
        await producer.send_and_wait(raw_topic, wrong_shape, key=b"shape")
        no_recording = orjson.loads(daily_started)
        del no_recording["payload"]["recording_id"]
        await producer.send_and_wait(raw_topic, orjson.dumps(no_recording), key=b"no-id")
        lying = [("provider", b"daily")]  # an OpenVidu body under a Daily header
        await producer.send_and_wait(raw_topic, ov_started, key=b"lying", headers=lying)
        await producer.send_and_wait(raw_topic, None, key=b"tombstone")
        await producer.send_and_wait(raw_topic, HUGE, key=b"huge")
        # Still folded after all of that: a poison record never stalls its partition.
        mis_keyed = _with(daily_started, id="mis-keyed-1", payload__recording_id="rec-mis-keyed")
        await producer.send_and_wait(raw_topic, mis_keyed, key=b"wrong-key")
    finally:
        await producer.stop()

    recordings = {
        "08fa0b24-9220-44c5-846c-3f116cf8e738": "finished",
        "5b0a61b6-1c9d-4b0f-9c3e-2f0e7a8d9c11": "finished",
        "room-123--EG_XYZ--XX445": "finished",
        "rec-failing": "failed",
        "rec-mis-keyed": "active",
        "rec-no-file": "finished",
    }

    def latest(found):
        states = {}
        for message in found:
            states[message["recording_id"]] = message
        return states

    state = latest(
        await wait_for_messages(
            bootstrap,
            env["STREAMPROC_STATE_TOPIC"],
            lambda found: _states_and_join_settled(latest(found), recordings),
        )
    )
    assert {k: v["status"] for k, v in state.items()} == recordings
    cloud = state["08fa0b24-9220-44c5-846c-3f116cf8e738"]
    assert cloud["started_at"] == 1692124183 and cloud["duration_s"] == 9
    # started, ready-to-download and the error joined through its instance id
    assert cloud["s3_key"] == DAILY_CLOUD and cloud["events_applied"] == 3
    assert cloud["error"] == "cloud-recording-error: recording stopped unexpectedly"
    assert "c3df927c-f738-4471-a2b7-066fa7e95a6b" not in state  # no row keyed by an instance

    lifecycle = await wait_for_messages(
        bootstrap,
        env["STREAMPROC_LIFECYCLE_TOPIC"],
        lambda found: sum(m["type"] == "recording.completed" for m in found) >= 4,
    )
    completed = [m for m in lifecycle if m["type"] == "recording.completed"]
    assert sorted(m["recording_id"] for m in completed) == sorted(
        k for k, v in recordings.items() if v == "finished"
    )

    start_failed = await wait_for_messages(
        bootstrap,
        env["STREAMPROC_LIFECYCLE_TOPIC"],
        lambda found: any(m["type"] == "recording.start-failed" for m in found),
    )
    assert [
        (m["instance_id"], m["recording_id"], m["caused_by"])
        for m in start_failed
        if m["type"] == "recording.start-failed"
    ] == [("inst-never", None, "err-3")]
    failed = [(m["recording_id"], m["error"]) for m in lifecycle if m["type"] == "recording.failed"]
    assert failed == [("rec-failing", "cloud-recording-error: recording stopped unexpectedly")]
    assert len({m["event_id"] for m in lifecycle}) == len(lifecycle)

    downloads = await wait_for_messages(
        bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) >= 4
    )
    assert sorted(m["source"]["key"] for m in downloads) == sorted(stack["objects"])
    for message in downloads:
        original = stack["objects"][message["source"]["key"]]
        assert await asyncio.to_thread(Path(message["destination"]).read_bytes) == original
        assert message["sha256"] == hashlib.sha256(original).hexdigest()
        assert message["size"] == len(original)

    dead = await wait_for_messages(
        bootstrap, env["STREAMPROC_DLQ_TOPIC"], lambda found: len(found) >= 7
    )
    [fetch_failure] = [m for m in dead if m["stage"] == "fetch"]
    assert fetch_failure["recording_id"] == "rec-no-file"
    assert "404" in fetch_failure["reason"]
    assert fetch_failure["source"]["topic"] == env["STREAMPROC_FETCH_TOPIC"]
    reasons = {base64.b64decode(m["key_base64"]): m for m in dead if m["stage"] == "decode"}
    assert set(reasons) == {b"junk", b"shape", b"no-id", b"lying", b"tombstone", b"huge"}
    assert "not valid JSON" in reasons[b"junk"]["reason"]
    assert "schema" in reasons[b"shape"]["reason"]
    assert "recording_id" in reasons[b"no-id"]["reason"]
    assert "daily" in reasons[b"lying"]["reason"]
    assert "empty value" in reasons[b"tombstone"]["reason"]
    assert reasons[b"junk"]["source"]["topic"] == env["STREAMPROC_RAW_TOPIC"]
    # The exact bytes, to replay once the cause is fixed.
    assert base64.b64decode(reasons[b"junk"]["value_base64"]) == b"\x00\xffnot json"
    assert base64.b64decode(reasons[b"lying"]["value_base64"]) == ov_started
    huge = reasons[b"huge"]
    assert "event limit" in huge["reason"]
    assert (huge["value_base64"], huge["value_size"]) == (None, len(HUGE))  # left out...
    [stored] = [r for r in await read_topic(bootstrap, raw_topic) if r.key == b"huge"]
    assert stored.offset == huge["source"]["offset"] and stored.value == HUGE  # ...not lost

    for topic, schema in [
        ("STATE", "state"),
        ("LIFECYCLE", "lifecycle"),
        ("DOWNLOADS", "download"),
        ("DLQ", "dead-letter"),
        ("FETCH", "fetch-request"),
    ]:
        for message in messages(await read_topic(bootstrap, env[f"STREAMPROC_{topic}_TOPIC"])):
            assert schemas.first_error(f"derived/{schema}.json", message) is None, message


@pytest.fixture
def prometheus_api(stack, tmp_path):
    """Debian's ``prometheus`` scraping this module's edge and worker every second, with
    deploy/prometheus/alerts.yml loaded; its HTTP API's base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`; .ci/run installs it)")
    port = free_port()
    worker_port = stack["worker"].env["STREAMPROC_WORKER_WEB_PORT"]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO / "deploy" / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "streamproc-edge",
                "static_configs": [{"targets": [stack["edge"].url.removeprefix("http://")]}],
            },
            {
                "job_name": "streamproc-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_bytes(orjson.dumps(config))  # JSON is YAML
    with (tmp_path / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        stop_process(server)


async def _eventually(check, timeout_s: float = 60):
    """``check()`` until it answers something true, or its last answer at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await check()
        if answer or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.5)


async def test_a_real_prometheus_scrapes_both_and_fires_the_fetch_alert(stack, prometheus_api):
    """A recording whose file is missing shows in the scraped counters and fires the alerts."""
    async with httpx.AsyncClient(timeout=5) as client:

        async def query(expr: str) -> float | None:
            try:
                answer = (
                    await client.get(f"{prometheus_api}/query", params={"query": expr})
                ).json()
            except (httpx.HTTPError, ValueError):  # not up, or still starting (not JSON yet)
                return None
            result = answer.get("data", {}).get("result", [])
            return float(result[0]["value"][1]) if result else None

        async def firing() -> set[str]:
            alerts = (await client.get(f"{prometheus_api}/alerts")).json()["data"]["alerts"]
            return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

        async def value_when(expr: str, wanted) -> float | None:
            async def check():
                value = await query(expr)
                return value if value is not None and wanted(value) else None

            return await _eventually(check)

        assert await value_when('sum(up{job=~"streamproc-.*"})', lambda v: v == 2) == 2
        published = 'sum(streamproc_edge_requests_total{outcome="published"})'
        before = await value_when(published, lambda v: True)
        assert before is not None, "the edge's counter was never scraped"
        missing = _with(
            example("daily", "recording.ready-to-download"),
            id="rtd-missing-for-prometheus",
            payload__recording_id="rec-prometheus",
            payload__s3_key="not-there.mp4",
        )
        await _post(stack["edge"], "daily", missing)
        assert await value_when(published, lambda v: v == before + 1) == before + 1
        rate = "sum(rate(streamproc_edge_requests_total[10s]))"
        assert await value_when(rate, lambda v: v > 0)
        fetch_failed = 'sum(streamproc_worker_events_total{outcome="dead_lettered.fetch"})'
        # the first test's missing file, and this one
        assert await value_when(fetch_failed, lambda v: v >= 2)

        async def fetch_alert_firing() -> set[str]:
            names = await firing()
            return names if "StreamprocFetchFailures" in names else set()

        names = await _eventually(fetch_alert_firing, timeout_s=30)
        assert {"StreamprocFetchFailures", "StreamprocDeadLettersGrowing"} <= names, names
        assert "StreamprocEdgeErrors" not in names


def test_no_secret_in_logs_or_metrics(stack):
    """After everything above (errors, dead letters, retries), no provider key or S3 secret
    is in the edge's or the worker's log or metrics."""
    worker_port = stack["worker"].env["STREAMPROC_WORKER_WEB_PORT"]
    texts = [
        (stack["root"] / "edge.log").read_bytes(),
        stack["worker"].log_path.read_bytes(),
        httpx.get(f"{stack['edge'].url}/metrics", timeout=10).content,
        httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=10).content,
    ]
    assert all(texts[:2]), "a log is empty: nothing was checked"
    assert leaked_secrets(*texts) == []

"""Test helpers shared by unit and integration tests (importable as ``helpers``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from streamproc.local.processes import free_port, stop_process, wait_for_port
from streamproc.providers import PROVIDERS

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "schemas" / "examples"


def example(provider: str, name: str) -> bytes:
    """An example payload from ``schemas/examples`` (built from the seeds), as raw bytes."""
    return (EXAMPLES / provider / f"{name}.json").read_bytes()


async def read_topic(
    bootstrap: str,
    topic: str,
    expect: int = 0,
    timeout_s: float = 10,
    isolation_level: str = "read_uncommitted",
) -> list:
    """Every record now in ``topic`` (all partitions, from the start), read by a plain consumer
    (``read_committed``: only what committed transactions wrote, as an exactly-once reader).

    Waits until at least ``expect`` records are there or ``timeout_s`` passes.
    """
    import asyncio
    import time

    from aiokafka import AIOKafkaConsumer

    from streamproc.kafka.metadata import topic_partitions
    from streamproc.kafka.reading import read_to_end

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            parts = await topic_partitions(consumer, topic)
            records = [record async for record in read_to_end(consumer, parts)]
            if len(records) >= expect or time.monotonic() > deadline:
                return sorted(records, key=lambda r: (r.partition, r.offset))
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


DAILY_KEY = b"daily-secret-key-0123456789abcdef"
DAILY_OLD_KEY = b"daily-old-key"
OPENVIDU_KEY = b"openvidu-api-key"
KEYS = {"daily": DAILY_KEY, "openvidu": OPENVIDU_KEY}
S3_SECRET = "s3-secret-never-logged-4f1c"
SECRETS = (
    DAILY_KEY.decode(),
    base64.b64encode(DAILY_KEY).decode(),
    DAILY_OLD_KEY.decode(),
    base64.b64encode(DAILY_OLD_KEY).decode(),
    OPENVIDU_KEY.decode(),
    S3_SECRET,
)
"""Every secret the test processes are configured with; none may show in a log, a metric or
an answer (``leaked_secrets``)."""


async def delete_topics(bootstrap: str, names: list[str], timeout_s: float = 30) -> None:
    """Delete ``names`` and return once the broker's metadata no longer lists them. Kafka
    answers DeleteTopics once its controller has committed the deletion; a broker's metadata
    cache learns it from the metadata log afterwards, so a list right after the answer can
    still name the topic (``test_topics_can_be_deleted[kafka]`` saw it, CI 2026-12-05)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
        deadline = time.monotonic() + timeout_s
        while set(names) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{names} still listed {timeout_s:.0f} s after deletion")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def leaked_secrets(*texts: str | bytes) -> list[str]:
    """The configured secrets that appear in any of ``texts``."""
    joined = "\n".join(t.decode(errors="replace") if isinstance(t, bytes) else t for t in texts)
    return [secret for secret in SECRETS if secret in joined]


@dataclass
class RunningEdge:
    url: str
    raw_topic: str
    bootstrap: str
    process: subprocess.Popen[bytes]


def start_edge(
    bootstrap: str, raw_topic: str, log_path: Path | None = None, **extra: str
) -> RunningEdge:
    """An edge process; its output goes to ``log_path`` when given (else the test's own)."""
    port = free_port()
    env = {
        **os.environ,
        "STREAMPROC_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMPROC_RAW_TOPIC": raw_topic,
        "STREAMPROC_EDGE_PORT": str(port),
        "STREAMPROC_DAILY_SECRETS": (
            f"current:{base64.b64encode(DAILY_KEY).decode()},"
            f"previous:{base64.b64encode(DAILY_OLD_KEY).decode()}"
        ),
        "STREAMPROC_OPENVIDU_SECRETS": f"apikey:{OPENVIDU_KEY.decode()}",
        **extra,
    }
    command = [sys.executable, "-m", "streamproc", "edge"]
    if log_path is None:
        process = subprocess.Popen(command, env=env)
    else:
        with log_path.open("ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait_for_port("127.0.0.1", port, timeout_s=30):
        stop_process(process)
        raise RuntimeError("edge did not start")
    return RunningEdge(f"http://127.0.0.1:{port}", raw_topic, bootstrap, process)


def signed(provider: str, body: bytes, key: bytes | None = None, ts: str | None = None) -> dict:
    """Headers the provider would send with ``body``: signed now unless ``ts`` is given."""
    timestamp = ts or str(int(time.time()))
    return PROVIDERS[provider].scheme.signed_headers(key or KEYS[provider], body, timestamp)


@dataclass
class RunningWorker:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path


def worker_env(bootstrap: str, s3_endpoint: str, prefix: str, sink: Path, **extra: str) -> dict:
    """Settings for a worker whose topics, group and table are all private to ``prefix``."""
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "STREAMPROC_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMPROC_APP_ID": f"{prefix}-app",
        "STREAMPROC_RAW_TOPIC": f"{prefix}.raw",
        "STREAMPROC_STATE_TOPIC": f"{prefix}.state",
        "STREAMPROC_LIFECYCLE_TOPIC": f"{prefix}.lifecycle",
        "STREAMPROC_DOWNLOADS_TOPIC": f"{prefix}.downloads",
        "STREAMPROC_DLQ_TOPIC": f"{prefix}.dlq",
        "STREAMPROC_FETCH_TOPIC": f"{prefix}.fetch",
        "STREAMPROC_DATA_DIR": str(sink.parent / f"{prefix}-data"),
        "STREAMPROC_SINK": str(sink),
        "STREAMPROC_S3_ENDPOINT_URL": s3_endpoint,
        "STREAMPROC_S3_BUCKET": f"{prefix}-recordings",
        "STREAMPROC_SESSION_TIMEOUT_S": "6",
        "STREAMPROC_COMMIT_INTERVAL_S": "0.5",
        "STREAMPROC_FETCH_BACKOFF_S": "0.05",
        "STREAMPROC_FETCH_ATTEMPTS": "3",
        # A failed download is dead-lettered at once, for the tests that look for it there;
        # the retry tests and the chaos suite set their own waits.
        "STREAMPROC_FETCH_RETRY_DELAYS_S": "none",
        **extra,
    }


def start_worker(env: dict[str, str], log_path: Path) -> RunningWorker:
    env = {**env, "STREAMPROC_WORKER_WEB_PORT": str(free_port())}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamproc", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
        )
    return RunningWorker(process, env, log_path)


SWEEPER_WARNING = "were never handled"


def logs_with_swept_records(folder: Path) -> list[str]:
    """Worker logs in which the skipped-record sweeper forwarded something: the engine
    committed past records it never handled (``streamproc.worker.gaps``)."""
    return [p.name for p in sorted(folder.glob("worker-*.log")) if SWEEPER_WARNING in p.read_text()]


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def messages(records: list) -> list[dict]:
    import orjson

    return [orjson.loads(record.value) for record in records]


DAILY_T = 1_700_000_000


def finished(recording: str, key: str) -> list[bytes]:
    """A Daily recording's started and ready-to-download events, its file at ``key``."""

    def daily(kind: str, **payload: object) -> bytes:
        document = {"version": "1.0.0", "type": kind, "id": f"{kind}-{recording}"}
        document["event_ts"] = DAILY_T
        return orjson.dumps(document | {"payload": {"recording_id": recording, **payload}})

    ready = daily("recording.ready-to-download", s3_key=key, status="finished")
    return [daily("recording.started"), ready]


async def send(bootstrap: str, topic: str, recording: str, bodies: list[bytes]) -> None:
    """Straight to ``topic`` (the raw topic, as another producer), keyed by ``recording``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for body in bodies:
            await producer.send_and_wait(
                topic, body, key=recording.encode(), headers=[("provider", b"daily")]
            )
    finally:
        await producer.stop()


def repeated_messages(by_topic: dict[str, list]) -> dict[str, list]:
    """Per derived topic, what a consumer with no de-duplication read more than once: a state
    by (recording, the event that made it), a lifecycle or download message by event id."""
    repeated = {}
    for name, records in by_topic.items():
        found = messages(records)
        if name == "STATE":
            ids = [(m["recording_id"], m["updated_by"]) for m in found]
        else:
            ids = [(m["type"], m["event_id"]) if "type" in m else m["event_id"] for m in found]
        repeated[name] = [key for key, count in Counter(ids).items() if count > 1]
    return repeated


async def wait_for_messages(
    bootstrap: str,
    topic: str,
    predicate,
    timeout_s: float = 90,
    isolation_level: str = "read_uncommitted",
) -> list[dict]:
    """The topic's messages once ``predicate(messages)`` holds, or when time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        read = await read_topic(bootstrap, topic, timeout_s=1, isolation_level=isolation_level)
        found = messages(read)
        if predicate(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


SENDERS = (
    "state",
    "lifecycle",
    "fetch_requests",
    "downloads",
    "dead_letters",
    "rekeyed",
    "instances",
)


def in_memory_pipeline(default, partitions: int = 4, **senders):
    """A worker ``Pipeline`` over dict tables; every sender is ``default`` unless named."""
    from streamproc.worker.pipeline import Pipeline

    chosen = {name: senders.get(name, default) for name in SENDERS}
    return Pipeline(
        table={}, instance_table={}, partitions=partitions, providers=PROVIDERS, **chosen
    )


@contextlib.contextmanager
def broker_on_s3(s3_endpoint: str, log_dir: Path, delay_s: float = 0.0):
    """An embedded broker keeping its log in a new bucket (so it survives a restart), behind
    a proxy that holds each storage request ``delay_s`` (storage slower than a fetch wait)."""
    import uuid

    from s3proxy import S3Proxy

    from streamproc.local.broker import EmbeddedBroker

    bucket = f"log-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    storage = S3Proxy(s3_endpoint, delay_s=delay_s).start()
    broker = EmbeddedBroker(
        log_path=log_dir / "tansu.log",
        storage=f"s3://{bucket}/",
        env={
            **os.environ,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": storage.url,
            "AWS_ALLOW_HTTP": "true",
        },
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        storage.stop()


def broker_name(broker) -> str:
    """``kafka`` for an Apache Kafka node or cluster, ``tansu`` for the embedded broker."""
    from streamproc.local.apache_kafka import KafkaCluster

    return "kafka" if isinstance(broker, KafkaCluster) else "tansu"


async def lag_report(bootstrap: str, raw_topic: str, app_id: str) -> str:
    """What ``streamproc lag --app-id APP_ID`` prints (stdout, then stderr)."""
    command = [sys.executable, "-m", "streamproc", "lag", "--app-id", app_id]
    env = {**os.environ, "STREAMPROC_KAFKA_BOOTSTRAP": bootstrap, "STREAMPROC_RAW_TOPIC": raw_topic}
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, env=env
    )
    return done.stdout + done.stderr


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"

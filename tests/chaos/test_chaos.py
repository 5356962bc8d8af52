"""Chaos: signed webhooks through the real edge while workers die, groups rebalance, brokers
die and S3 misbehaves; then nothing acknowledged is lost and every output is right.

Four runs, each with three worker kills (one during its recovery) and two join/leave rounds:

- ``memory``: the embedded Tansu in memory, ``STREAMPROC_CHAOS_RECORDINGS`` recordings (two
  webhooks each; 3,000 by default, 25,000 in the long mode);
- ``durable``: Tansu keeping its log in S3 (moto), stopped and started again while webhooks
  flow; it folds about 25 events/s on two cores, so it is sized by
  ``STREAMPROC_CHAOS_DURABLE_RECORDINGS`` (1,000 by default, 5,000 in the long mode);
- ``kafka``: one Apache Kafka node, SIGKILLed while webhooks flow (for longer than the
  worker's session, so the group fences it) and started again with its log on disk
  (``STREAMPROC_CHAOS_KAFKA_RECORDINGS``, 2,000 by default);
- ``exactly-once`` and ``exactly-once-cluster``: as ``kafka`` and ``cluster``, with
  ``STREAMPROC_PROCESSING_GUARANTEE=exactly_once``; a ``read_committed`` reader of each
  derived topic, with no de-duplication, must see each message once;
- ``cluster``: three Kafka nodes, every topic RF 3 with ``min.insync.replicas=2``; the node
  leading most raw partitions is SIGKILLed while webhooks flow, later the worker group's
  coordinator, each started again (``STREAMPROC_CHAOS_CLUSTER_RECORDINGS``, 1,000 by
  default: three JVMs share the two cores with everything else).

In all, S3 downloads go through a proxy that fails 5 % of GETs (500, 503, dropped
connection, cut body), and the client retries until it gets a 2xx, like a provider. Seeded
by ``STREAMPROC_CHAOS_SEED``. Prints one line of figures; README's Reliability section keeps
the last ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from s3proxy import S3Proxy

from streamproc.local.apache_kafka import KafkaCluster, KafkaNode
from streamproc.local.broker import EmbeddedBroker
from streamproc.local.processes import stop_process
from streamproc.replay.run import ReplayRange, replay
from streamproc.settings import Settings

from helpers import (
    RunningWorker,
    logs_with_swept_records,
    messages,
    read_topic,
    repeated_messages,
    s3_client,
    signed,
    start_edge,
    start_worker,
    worker_env,
)

pytestmark = pytest.mark.chaos
RECORDINGS = {
    "memory": int(os.environ.get("STREAMPROC_CHAOS_RECORDINGS", "3000")),
    "durable": int(os.environ.get("STREAMPROC_CHAOS_DURABLE_RECORDINGS", "1000")),
    "kafka": int(os.environ.get("STREAMPROC_CHAOS_KAFKA_RECORDINGS", "2000")),
    "cluster": int(os.environ.get("STREAMPROC_CHAOS_CLUSTER_RECORDINGS", "1000")),
}
EXACTLY_ONCE = {"exactly-once": "kafka", "exactly-once-cluster": "cluster"}
"""Modes run with ``STREAMPROC_PROCESSING_GUARANTEE=exactly_once``, and their broker's mode."""
RECORDINGS |= {mode: RECORDINGS[broker] for mode, broker in EXACTLY_ONCE.items()}
SEED = int(os.environ.get("STREAMPROC_CHAOS_SEED", "0")) or random.randrange(1, 10**6)
SENDERS = 32
FAULT_RATE = 0.05


def webhook(kind: str, index: int) -> bytes:
    recording = f"rec-{index:06d}"
    payload: dict = {"recording_id": recording, "room_name": "chaos-room", "start_ts": 1000}
    if kind == "recording.ready-to-download":
        payload |= {"status": "finished", "s3_key": object_key(index), "duration": 5}
    return orjson.dumps(
        {
            "version": "1.0.0",
            "type": kind,
            "id": f"{kind}-{index}",
            "payload": payload,
            "event_ts": 1000 + (10 if kind != "recording.started" else 0),
        }
    )


def object_key(index: int) -> str:
    return f"files/rec-{index:06d}.mp4"


def object_body(index: int) -> bytes:
    return b"chaos %d " % index * (100 + index % 50)


class Sender:
    """A provider: posts each webhook until it gets a 2xx, backing off on anything else."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acknowledged: set[str] = set()
        self.refused: Counter[int | str] = Counter()
        self.took_s = 0.0
        self.half_sent = asyncio.Event()

    async def deliver(self, client: httpx.AsyncClient, event_id: str, body: bytes) -> None:
        delay = 0.05
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                response = await client.post(self.url, content=body, headers=signed("daily", body))
                if 200 <= response.status_code < 300:
                    self.acknowledged.add(event_id)
                    return
                self.refused[response.status_code] += 1
            except httpx.HTTPError as exc:
                self.refused[type(exc).__name__] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        raise AssertionError(f"{event_id} was never acknowledged")

    async def run(
        self, webhooks: list[tuple[str, bytes]], hold_back: asyncio.Event | None = None
    ) -> None:
        """``SENDERS`` at a time; with ``hold_back``, the second half waits until it is set
        (``half_sent`` tells when the first half is acknowledged)."""
        half = len(webhooks) // 2 if hold_back is not None else len(webhooks)
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=10) as client:
            await self._send(client, webhooks[:half])
            self.half_sent.set()
            if hold_back is not None:
                await hold_back.wait()
            await self._send(client, webhooks[half:])
        self.took_s = time.monotonic() - started

    async def _send(self, client: httpx.AsyncClient, webhooks: list[tuple[str, bytes]]) -> None:
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        for item in webhooks:
            queue.put_nowait(item)

        async def one_sender() -> None:
            while not queue.empty():
                await self.deliver(client, *queue.get_nowait())

        await asyncio.gather(*(one_sender() for _ in range(SENDERS)))


class Workers:
    """The main worker (killed and restarted) and a second one that joins and leaves."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started = 0
        self.kills = 0
        self.crashes = 0
        self.main = self._start()
        self.second: RunningWorker | None = None

    def _start(self, data_dir_suffix: str = "") -> RunningWorker:
        self.started += 1
        env = {**self.env, "STREAMPROC_DATA_DIR": self.env["STREAMPROC_DATA_DIR"] + data_dir_suffix}
        return start_worker(env, self.logs / f"worker-{self.started}.log")

    def kill_main(self) -> None:
        self.main.process.send_signal(signal.SIGKILL)
        self.main.process.wait()
        self.kills += 1
        self.main = self._start()

    def restart_if_crashed(self) -> None:
        """What a supervisor (Kubernetes, systemd) does for a worker that exited by itself."""
        if self.main.process.poll() is not None:
            self.crashes += 1
            self.main = self._start()

    def join_second(self) -> None:
        """A second machine: its own data directory (two workers on one RocksDB folder
        fight over its LOCK, which no deployment does)."""
        self.second = self._start("-second")

    def leave_second(self) -> None:
        if self.second is not None:
            stop_process(self.second.process)
            self.second = None

    def stop(self) -> None:
        self.leave_second()
        stop_process(self.main.process)


Step = tuple[str, float, float, Callable[[], object]]
"""A schedule's step: its name, the random wait before it (seconds, low to high), the action
(a function, run in a thread, or a coroutine function)."""


class BrokerUnderTest:
    """The run's broker, what it is told, and what the schedule does to it."""

    def __init__(self, mode: str, tmp_path: Path, s3_endpoint: str, prefix: str) -> None:
        self.mode = mode = EXACTLY_ONCE.get(mode, mode)
        self.env: dict[str, str] = {}
        self.worker_settings: dict[str, str] = {}
        """For the workers only (``env`` goes to the edge too)."""
        self.worker_env: dict[str, str] = {}
        self.killed: KafkaNode | None = None
        if mode in ("memory", "durable"):
            durable = {}
            if mode == "durable":
                s3_client(s3_endpoint).create_bucket(Bucket=f"{prefix}-log")
                durable["storage"] = f"s3://{prefix}-log/"
                durable["env"] = {
                    **os.environ,
                    "AWS_ACCESS_KEY_ID": "test",
                    "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT": s3_endpoint,
                    "AWS_ALLOW_HTTP": "true",
                }
            self.broker: EmbeddedBroker | KafkaCluster = EmbeddedBroker(
                log_path=tmp_path / "tansu.log", **durable
            )
        else:
            size = 3 if mode == "cluster" else 1
            self.broker = KafkaCluster(tmp_path / mode, size=size)
            if mode == "cluster":
                self.env = {
                    "STREAMPROC_TOPIC_REPLICATION_FACTOR": "3",
                    "STREAMPROC_TOPIC_MIN_INSYNC_REPLICAS": "2",
                }

    def first_steps(self) -> list[Step]:
        """Taken once half the webhooks are acknowledged; the other half waits until the
        first of them is done, so that webhooks meet the broker away."""
        broker = self.broker
        if self.mode == "durable":
            return [("broker stopped", 0, 0, broker.stop), ("broker started", 2, 4, broker.start)]
        if self.mode == "kafka":
            return [("broker killed", 0, 0, broker.kill), ("broker started", 2, 4, broker.start)]
        if self.mode == "cluster":
            return [
                ("raw leader killed", 0, 0, self.kill_raw_leader),
                ("raw leader started", 4, 6, self.start_killed),
            ]
        return []

    def later_steps(self) -> list[Step]:
        if self.mode == "cluster":
            return [
                ("coordinator killed", 2, 4, self.kill_coordinator),
                ("coordinator started", 4, 6, self.start_killed),
            ]
        return []

    async def kill_raw_leader(self) -> None:
        raw = self.worker_env["STREAMPROC_RAW_TOPIC"]
        async with _admin(self.broker.bootstrap) as admin:
            [description] = await admin.describe_topics([raw])
        leaders = Counter(p["leader"] for p in description["partitions"])
        await asyncio.to_thread(self._kill, leaders.most_common(1)[0][0])

    async def kill_coordinator(self) -> None:
        async with _admin(self.broker.bootstrap) as admin:
            node_id = await admin.find_coordinator(self.worker_env["STREAMPROC_APP_ID"])
        await asyncio.to_thread(self._kill, node_id)

    def _kill(self, node_id: int) -> None:
        assert isinstance(self.broker, KafkaCluster)
        self.killed = self.broker.node(node_id)
        self.killed.kill()

    def start_killed(self) -> None:
        if self.killed is not None:
            self.killed.start()
            self.killed = None


@contextlib.asynccontextmanager
async def _admin(bootstrap: str):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def chaos(
    workers: Workers,
    brokers: BrokerUnderTest,
    rng: random.Random,
    half_sent: asyncio.Event,
    broker_away: asyncio.Event,
) -> list[str]:
    """The schedule: the broker's first steps, kills (one during recovery), its later steps,
    two join/leave rounds.

    Each step waits a random time (seconds, low to high) after the one before, except the
    broker's first: it comes once the sender has sent half its webhooks (``half_sent``), and
    ``broker_away`` releases the other half when it is done. A stopped Tansu goes on
    acknowledging writes on open connections for ~5 s
    (``test_broker_facts.py::test_a_terminated_broker_serves_open_connections_for_seconds``):
    when the stop came after a timed 2-4 s, the sender once finished within that grace, no
    request met the broker away and the edge never answered 503 (gate run of 2026-12-02,
    seed 506650, refused={}; twice more in a row after the stop was moved earlier).
    """
    first = brokers.first_steps()
    steps: list[Step] = [
        *first,
        ("kill", 3, 6, workers.kill_main),
        ("kill during recovery", 1, 2.5, workers.kill_main),
        *brokers.later_steps(),
        ("join", 6, 10, workers.join_second),
        ("leave", 4, 8, workers.leave_second),
        ("kill", 4, 8, workers.kill_main),
        ("join", 6, 10, workers.join_second),
        ("leave", 6, 10, workers.leave_second),
    ]
    if first:
        await half_sent.wait()
    done: list[str] = []
    for name, low, high, action in steps:
        end = time.monotonic() + rng.uniform(low, high)
        while time.monotonic() < end:
            workers.restart_if_crashed()
            await asyncio.sleep(0.2)
        if inspect.iscoroutinefunction(action):
            await action()
        else:
            await asyncio.to_thread(action)
        done.append(name)
        if first and name == first[0][0]:
            broker_away.set()
    return done


async def wait_for(predicate, timeout_s: float, workers: Workers):
    deadline = time.monotonic() + timeout_s
    while not (result := await predicate()) and time.monotonic() < deadline:
        workers.restart_if_crashed()
        await asyncio.sleep(2)
    return result


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "mode",
    # The cluster run (~2 min: three nodes) and the run on Tansu keeping its log in S3 (~80 s)
    # are left out of a plain pytest to keep it near 15 minutes; CI runs them after.
    [
        "memory",
        pytest.param("durable", marks=pytest.mark.long),
        "kafka",
        pytest.param("cluster", marks=pytest.mark.long),
        *(pytest.param(mode, marks=pytest.mark.long) for mode in EXACTLY_ONCE),
    ],
)
async def test_nothing_acknowledged_is_lost_through_kills_rebalances_broker_restart_and_s3_faults(
    request, s3_endpoint, tmp_path, mode
):
    if mode not in ("memory", "durable"):
        request.getfixturevalue("kafka_available")
    rng = random.Random(SEED)
    recordings = RECORDINGS[mode]
    prefix = f"chaos-{uuid.uuid4().hex[:6]}"
    s3 = s3_client(s3_endpoint)
    brokers = BrokerUnderTest(mode, tmp_path, s3_endpoint, prefix)
    if mode in EXACTLY_ONCE:
        brokers.worker_settings["STREAMPROC_PROCESSING_GUARANTEE"] = "exactly_once"
    broker = brokers.broker
    proxy = S3Proxy(s3_endpoint, fault_rate=FAULT_RATE, seed=SEED).start()
    sink = tmp_path / "downloads"
    env = worker_env(
        broker.bootstrap,
        proxy.url,
        prefix,
        sink,
        STREAMPROC_TABLE_STORE="rocksdb://",
        STREAMPROC_FETCH_ATTEMPTS="10",
        STREAMPROC_FETCH_RETRY_DELAYS_S="1,2",  # the retry relay runs through every fault
        STREAMPROC_FETCH_CONCURRENCY="32",
        **brokers.env,
        **brokers.worker_settings,
    )
    brokers.worker_env = env
    bucket = env["STREAMPROC_S3_BUCKET"]
    s3.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=bucket, Key=object_key(i), Body=object_body(i)),
                range(recordings),
            )
        )
    webhooks = [
        (f"{kind}-{index}", webhook(kind, index))
        for index in range(recordings)
        for kind in ("recording.started", "recording.ready-to-download")
    ]
    rng.shuffle(webhooks)  # providers deliver out of order
    broker.start()
    workers = Workers(env, tmp_path)
    # A short publish timeout, so that requests while the broker is away get 503, not a wait.
    edge = start_edge(
        broker.bootstrap,
        env["STREAMPROC_RAW_TOPIC"],
        tmp_path / "edge.log",
        STREAMPROC_PUBLISH_TIMEOUT_S="1",
        **brokers.env,
    )
    sender = Sender(f"{edge.url}/webhooks/daily")
    broker_away = asyncio.Event()
    started = time.monotonic()
    try:
        hold_back = broker_away if brokers.first_steps() else None
        _, schedule = await asyncio.gather(
            sender.run(webhooks, hold_back=hold_back),
            chaos(workers, brokers, rng, sender.half_sent, broker_away),
        )
        chaos_for = time.monotonic() - started

        async def all_downloaded() -> bool:
            records = await read_topic(broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], 0, 1)
            return len({m["event_id"] for m in messages(records)}) >= recordings

        assert await wait_for(all_downloaded, 600, workers), "not every recording was downloaded"
        swept = _records_swept(workers)
        settle_for = time.monotonic() - started - chaos_for
        topics = {
            name: await read_topic(broker.bootstrap, env[f"STREAMPROC_{name}_TOPIC"], 0, 2)
            for name in ("RAW", "STATE", "LIFECYCLE", "DOWNLOADS", "DLQ")
        }
        committed = {
            name: await read_topic(
                broker.bootstrap,
                env[f"STREAMPROC_{name}_TOPIC"],
                0,
                2,
                isolation_level="read_committed",
            )
            for name in ("STATE", "LIFECYCLE", "DOWNLOADS")
        }
    finally:
        workers.stop()
        stop_process(edge.process)
        proxy.stop()

    try:
        in_raw = {dict(r.headers)["event-id"].decode() for r in topics["RAW"]}
        lost = sender.acknowledged - in_raw
        downloads = messages(topics["DOWNLOADS"])
        by_recording = {m["recording_id"]: m for m in downloads}
        expected = {f"rec-{i:06d}": i for i in range(recordings)}
        wrong_checksum = [
            rid
            for rid, i in expected.items()
            if by_recording.get(rid, {}).get("sha256") != hashlib.sha256(object_body(i)).hexdigest()
        ]
        on_disk = {p.relative_to(sink).as_posix() for p in sink.rglob("*") if p.is_file()}
        wanted_on_disk = {f"daily/{rid}/{object_key(i)}" for rid, i in expected.items()}
        wanted_on_disk |= {
            f"daily/{rid}/files/.{Path(object_key(i)).name}.sha256" for rid, i in expected.items()
        }
        repeated_gets = sum(count - 1 for count in proxy.complete_gets.values() if count > 1)

        clean = await replay(Settings.from_env(env), ReplayRange(), dry_run=True, progress=False)
        live_states = {m["recording_id"]: m for m in messages(topics["STATE"])}
        differing_states = [
            rid
            for rid, state in clean.states.items()
            if (
                live_states.get(rid, {}).get("status"),
                live_states.get(rid, {}).get("events_applied"),
            )
            != (state.status, len(state.event_ids))
        ]
        clean_lifecycle = {
            orjson.loads(value)["event_id"]
            for topic, _, value in clean.emitted
            if topic == env["STREAMPROC_LIFECYCLE_TOPIC"]
        }
        live_lifecycle = {m["event_id"] for m in messages(topics["LIFECYCLE"])}
        repeated = repeated_messages(committed)
    finally:
        broker.stop()

    print(
        f"\nchaos {mode} seed={SEED}: webhooks sent={len(webhooks)}"
        f" acknowledged={len(sender.acknowledged)}"
        f" refused={dict(sender.refused)} in raw={len(in_raw)} lost={len(lost)};"
        f" recordings finished={len(expected)} downloaded={len(by_recording)}"
        f" wrong checksum={len(wrong_checksum)} repeated full GETs={repeated_gets}"
        f" messages seen twice read_committed={ {k: len(v) for k, v in repeated.items()} }"
        f" S3 faults={dict(proxy.faults)}; states differing from a clean fold="
        f"{len(differing_states)}; records swept={swept}; dead letters={len(topics['DLQ'])};"
        f" chaos={schedule} kills={workers.kills} crashes={workers.crashes};"
        f" sending {sender.took_s:.0f} s, chaos {chaos_for:.0f} s, settling {settle_for:.0f} s"
    )
    assert len(sender.acknowledged) == len(webhooks)
    if brokers.mode in ("durable", "kafka"):
        assert sender.refused[503], "the edge never answered 503 while the broker was away"
    assert not lost, f"acknowledged but not in the raw topic: {sorted(lost)[:10]}"
    assert in_raw <= {event_id for event_id, _ in webhooks}
    assert not wrong_checksum, wrong_checksum[:10]
    assert wanted_on_disk <= on_disk, sorted(wanted_on_disk - on_disk)[:10]
    assert on_disk <= wanted_on_disk, (
        f"partial or stray files: {sorted(on_disk - wanted_on_disk)[:10]}"
    )
    assert swept == 0, "the engine committed past records it never handled (the sweeper's count)"
    assert not differing_states, differing_states[:10]
    assert live_lifecycle == clean_lifecycle
    assert not topics["DLQ"], messages(topics["DLQ"])[:3]
    if mode in EXACTLY_ONCE:
        assert not any(repeated.values()), {k: v[:5] for k, v in repeated.items()}
    # A download repeats only if its worker died between the last byte and the marker.
    assert repeated_gets <= workers.kills * int(env.get("STREAMPROC_FETCH_CONCURRENCY", "8"))


def _records_swept(workers: Workers) -> int:
    """The sweeper's count from every worker that is still up, plus its warnings in any log."""
    swept = 0
    for worker in (workers.main, workers.second):
        if worker is None:
            continue
        port = worker.env["STREAMPROC_WORKER_WEB_PORT"]
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if line.startswith("streamproc_worker_records_swept_total"):
                swept += int(float(line.split()[-1]))
    return swept + len(logs_with_swept_records(workers.logs))

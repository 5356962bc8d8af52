"""End-to-end latency: from the edge's 200 for a Daily ``recording.ready-to-download`` to the
``recording.completed`` message visible to a consumer of the lifecycle topic, and to the
download's message on the downloads topic.

The whole stack runs here (embedded broker, moto S3, ``streamproc edge`` and ``streamproc
worker``, which also downloads every finished recording); an open-loop generator
(``loadgen.py``) sends ``--rate`` webhooks/s for ``--seconds`` (half of them start a recording,
half finish the one started just before). A warm-up recording goes through first so the
worker's start-up is not measured. Usage:

    .venv/bin/python bench/e2e_latency.py [--rate 1000] [--seconds 60] [--split] ...
    .venv/bin/python bench/e2e_latency.py --find-highest 200,400,600,800,1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import bench_broker
from cpu import cpu_seconds, with_children
from loadgen import Request, open_loop, percentile
from report import Figure, table

from streamproc.local.demo import _daily
from streamproc.local.processes import ServerProcess, free_port
from streamproc.local.s3 import LOCAL_CREDENTIALS, EmbeddedS3
from streamproc.providers import daily
from streamproc.settings import Settings
from streamproc.worker.topics import prepare_topics

KEY = b"bench-e2e-secret"
BUCKET = "bench-e2e"
OBJECT = "bench/recording.mp4"
FINISHING = b"recording.ready-to-download"
WATCHER_FETCH_WAIT_MS = 20  # aiokafka's 500 ms default would add up to that to every figure


def webhooks(first: int, count: int, downloads: bool = True) -> list[tuple[str, Request]]:
    """(recording id, request) pairs: started then ready-to-download for each recording;
    without ``downloads`` the finished event names no object (the fetch ends in the DLQ at
    once, with no S3 call), to tell the fold's latency from the downloads' load."""
    now = int(time.time())
    out = []
    for index in range(first, first + count):
        recording = f"e2e-{index:07d}"
        for kind, payload in (
            ("recording.started", {"start_ts": now}),
            (
                "recording.ready-to-download",
                {
                    "status": "finished",
                    "duration": 1,
                    "start_ts": now,
                    "type": "cloud",
                    "s3_key": OBJECT if downloads else None,
                    "max_participants": 1,
                },
            ),
        ):
            body = _daily(kind, index, recording, now, **payload).body
            headers = daily.SCHEME.signed_headers(KEY, body, str(now))
            out.append((recording, Request("/webhooks/daily", headers, body)))
    return out


class CompletedWatcher:
    """Notes the time (``perf_counter``, as the generator's) each ``recording.completed``
    reaches a consumer."""

    def __init__(self, bootstrap: str, settings: Settings, read_committed: bool = False) -> None:
        self.lifecycle_topic = settings.lifecycle_topic
        self.downloads_topic = settings.downloads_topic
        self.consumer = AIOKafkaConsumer(
            settings.raw_topic,
            settings.lifecycle_topic,
            settings.downloads_topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=WATCHER_FETCH_WAIT_MS,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
        )
        self.seen: dict[str, float] = {}
        self.downloaded: dict[str, float] = {}  # the first downloads message per recording
        self.raw_at: dict[str, float] = {}  # record timestamps (ms) of ready-to-download
        self.folded_ms: list[float] = []  # raw record -> lifecycle record (the worker)
        self.delivery_ms: list[float] = []  # lifecycle record -> seen here (the consumer)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=20)
            now, wall_ms = time.perf_counter(), time.time() * 1000  # the generator's clock
            for tp, records in batch.items():
                for record in records:
                    if tp.topic == self.downloads_topic:
                        recording = orjson.loads(record.value)["recording_id"]
                        self.downloaded.setdefault(recording, now)
                        continue
                    if tp.topic != self.lifecycle_topic:
                        if ("event-type", FINISHING) in record.headers:
                            self.raw_at[record.key.decode()] = record.timestamp
                        continue
                    message = orjson.loads(record.value)
                    recording = message["recording_id"]
                    if message["type"] == "recording.completed" and recording not in self.seen:
                        self.seen[recording] = now
                        self.delivery_ms.append(wall_ms - record.timestamp)
                        if recording in self.raw_at:
                            self.folded_ms.append(record.timestamp - self.raw_at[recording])

    async def wait_for(
        self, recordings: set[str], timeout_s: float, downloaded: bool = False
    ) -> bool:
        """Until each of ``recordings`` is completed (and ``downloaded``, reported)."""
        deadline = time.monotonic() + timeout_s
        seen = self.downloaded if downloaded else self.seen
        while not recordings <= seen.keys():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()


async def measure(
    port: int,
    bootstrap: str,
    rate: float,
    seconds: float,
    downloads: bool,
    read_committed: bool = False,
    pids: dict[str, int] | None = None,
) -> dict[str, float]:
    """Latency percentiles, and ``cpu <name>``: the cores each of ``pids`` (a server with
    its children) used while the load was sent."""
    settings = Settings.from_env({"STREAMPROC_KAFKA_BOOTSTRAP": bootstrap})
    await prepare_topics(settings)  # so the watcher's subscription finds its topic at once
    watcher = CompletedWatcher(bootstrap, settings, read_committed)
    await watcher.start()
    try:
        warm_up = webhooks(0, 1)
        answers = await open_loop("127.0.0.1", port, [request for _, request in warm_up], 10, 1)
        if any(answer.status != 200 for answer in answers):
            raise RuntimeError(f"the edge refused the warm-up webhooks: {answers}")
        if not await watcher.wait_for({warm_up[0][0]}, 120):
            raise RuntimeError("the warm-up recording was not completed within 120 s")
        load = webhooks(1, max(1, int(rate * seconds / 2)), downloads)
        processes = {  # this process alone: the servers are its children
            name: [pid] if pid == os.getpid() else with_children(pid)
            for name, pid in (pids or {}).items()
        }
        before = {name: cpu_seconds(group) for name, group in processes.items()}
        started = time.monotonic()
        answers = await open_loop("127.0.0.1", port, [request for _, request in load], rate)
        elapsed = time.monotonic() - started
        cores = {
            f"cpu {name}": (after - before[name]) / elapsed
            for name, group in processes.items()
            if (after := cpu_seconds(group)) is not None and before[name] is not None
        }
        failed = sum(1 for answer in answers if not 200 <= answer.status < 300)
        if failed:
            statuses = Counter(answer.status for answer in answers)
            raise RuntimeError(f"the edge refused {failed} of {len(answers)} webhooks: {statuses}")
        finished = {load[a.index][0]: a.answered for a in answers if a.index % 2 == 1}
        if not await watcher.wait_for(set(finished), 300):
            missing = len(set(finished) - watcher.seen.keys())
            raise RuntimeError(f"{missing} recordings were never completed")
        latencies = [(watcher.seen[r] - answered) * 1000 for r, answered in finished.items()]
        figures = {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "folded p50": percentile(watcher.folded_ms, 0.5),
            "delivery p50": percentile(watcher.delivery_ms, 0.5),
        } | cores
        if downloads:
            if not await watcher.wait_for(set(finished), 300, downloaded=True):
                missing = len(set(finished) - watcher.downloaded.keys())
                raise RuntimeError(f"{missing} recordings were never reported downloaded")
            fetched = [(watcher.downloaded[r] - at) * 1000 for r, at in finished.items()]
            figures |= {
                "downloaded p50": percentile(fetched, 0.5),
                "downloaded p99": percentile(fetched, 0.99),
            }
        return figures
    finally:
        await watcher.stop()


def run(
    rate: float = 1000,
    seconds: float = 60,
    fetch_wait_ms: int | None = None,
    downloads: bool = True,
    split: bool = False,
    exactly_once: bool = False,
    commit_interval_s: float | None = None,
) -> list[Figure]:
    """``fetch_wait_ms``: the worker's STREAMPROC_FETCH_MAX_WAIT_MS (None: its default);
    ``split``: a ``fold`` worker and a ``fetch`` worker (STREAMPROC_WORKER_ROLE) instead of one,
    with the cores each process used during the load; ``exactly_once``: the workers with
    transactions (Kafka only) and a ``read_committed`` consumer, which sees a message once its
    transaction commits (every ``commit_interval_s``, STREAMPROC_COMMIT_INTERVAL_S; None: the
    worker's default)."""
    figures = _stack(
        rate, seconds, fetch_wait_ms, downloads, split, exactly_once, commit_interval_s
    )
    wait = "default" if fetch_wait_ms is None else f"{fetch_wait_ms} ms"
    load = f"at {rate:,.0f} webhooks/s for {seconds:g} s, open loop, worker fetch wait {wait}"
    if not downloads:
        load += ", no downloads"
    if split:
        load += ", fold and fetch workers apart"
    if exactly_once:
        load += ", exactly-once, read_committed consumer"
    if commit_interval_s is not None:
        load += f", commit every {commit_interval_s:g} s"
    return _rows(figures, load, cpu=split)


SUSTAINED_P99_MS = 1000
"""The stack sustains a rate when both p99s (completed, downloaded) stay within this: past
it, an open loop's latency grows with the run (the stack falls behind)."""


def highest_sustained(rates: tuple[float, ...], seconds: float) -> list[Figure]:
    """The highest of ``rates`` (ascending, tried until one fails) the whole stack sustains,
    fold and fetch workers apart as ``up`` runs them, with the cores each process used."""
    best: tuple[float, dict[str, float]] | None = None
    for rate in rates:
        try:
            figures = _stack(rate, seconds, fetch_wait_ms=20, downloads=True, split=True)
        except RuntimeError as error:  # e.g. not all completed within 300 s: far behind
            print(f"  {rate:,.0f} webhooks/s: fell behind ({error})", file=sys.stderr)
            break
        kept = max(figures["p99"], figures["downloaded p99"]) <= SUSTAINED_P99_MS
        print(
            f"  {rate:,.0f} webhooks/s: completed p99 {figures['p99']:,.0f} ms, downloaded p99 "
            f"{figures['downloaded p99']:,.0f} ms: {'sustained' if kept else 'fell behind'}",
            file=sys.stderr,
        )
        if not kept:
            break
        best = (rate, figures)
    name = (
        f"end to end: highest rate sustained (completed and downloaded p99 <= "
        f"{SUSTAINED_P99_MS:,} ms), of {', '.join(f'{rate:g}' for rate in rates)} webhooks/s for "
        f"{seconds:g} s each, fold and fetch workers apart"
    )
    if best is None:
        return [Figure(name, 0, "webhooks/s", target="measured")]
    rate, figures = best
    load = f"at {rate:,.0f} webhooks/s (the highest sustained), fold and fetch workers apart"
    return [Figure(name, rate, "webhooks/s", target="measured"), *_rows(figures, load, cpu=True)]


def _rows(figures: dict[str, float], load: str, cpu: bool) -> list[Figure]:
    folded, delivered = figures["folded p50"], figures["delivery p50"]
    name = "end to end: edge 200 -> recording.completed visible"
    rows = [
        Figure(f"{name}, p50 {load}", figures["p50"], "ms"),
        Figure(f"{name}, p99 {load}", figures["p99"], "ms", target="<= 50 ms"),
        Figure("of which: raw record -> lifecycle record (the worker), p50", folded, "ms"),
        Figure("of which: lifecycle record -> seen by a consumer, p50", delivered, "ms"),
    ]
    if "downloaded p99" in figures:
        fetched = "end to end: edge 200 (finished) -> download reported on recordings.downloads"
        rows += [
            Figure(f"{fetched}, p50 {load}", figures["downloaded p50"], "ms"),
            Figure(
                f"{fetched}, p99 {load}",
                figures["downloaded p99"],
                "ms",
                target="<= 1,000 ms at 100 recordings/s",
            ),
        ]
    if cpu:
        rows += [
            Figure(f"CPU while the load ran, {key.removeprefix('cpu ')}, {load}", value, "cores")
            for key, value in figures.items()
            if key.startswith("cpu ")
        ]
    return rows


def _stack(
    rate: float,
    seconds: float,
    fetch_wait_ms: int | None = None,
    downloads: bool = True,
    split: bool = False,
    exactly_once: bool = False,
    commit_interval_s: float | None = None,
) -> dict[str, float]:
    """The whole stack started afresh, loaded once: ``measure``'s figures."""
    with tempfile.TemporaryDirectory() as scratch, bench_broker() as broker:
        logs = Path(os.environ.get("BENCH_LOGS") or scratch)  # keep them: BENCH_LOGS=dir
        s3 = EmbeddedS3().start()
        processes = []
        try:
            client = s3.client()
            client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key=OBJECT, Body=b"\0" * 4096)
            edge_port = free_port()
            env = {
                **LOCAL_CREDENTIALS,
                "STREAMPROC_KAFKA_BOOTSTRAP": broker.bootstrap,
                "STREAMPROC_S3_ENDPOINT_URL": s3.url,
                "STREAMPROC_S3_BUCKET": BUCKET,
                "STREAMPROC_SINK": f"{scratch}/downloads",
                "STREAMPROC_DATA_DIR": f"{scratch}/worker",
                "STREAMPROC_DAILY_SECRETS": base64.b64encode(KEY).decode(),
                "STREAMPROC_EDGE_PORT": str(edge_port),
                "STREAMPROC_LOG_LEVEL": "WARNING",
            }
            if fetch_wait_ms is not None:
                env["STREAMPROC_FETCH_MAX_WAIT_MS"] = str(fetch_wait_ms)
            if exactly_once:
                env["STREAMPROC_PROCESSING_GUARANTEE"] = "exactly_once"
            if commit_interval_s is not None:
                env["STREAMPROC_COMMIT_INTERVAL_S"] = str(commit_interval_s)
            servers = [("edge", "edge", edge_port, env)]
            for role in ("fold", "fetch") if split else ("all",):
                port = free_port()
                role_env = {**env, "STREAMPROC_WORKER_ROLE": role}
                role_env["STREAMPROC_WORKER_WEB_PORT"] = str(port)
                role_env["STREAMPROC_DATA_DIR"] = f"{scratch}/worker-{role}"
                servers.append(("worker", f"worker-{role}", port, role_env))
            for command, name, port, server_env in servers:
                server = ServerProcess(name, "127.0.0.1", port, server_env, logs / f"{name}.log")
                processes.append(server)
                server.start([sys.executable, "-m", "streamproc", command], 60)
            pids = {server.name: server.process.pid for server in processes if server.process}
            pids["moto S3 server"] = s3.server.process.pid
            pids["broker"] = broker.process.pid
            pids["load generator and consumer (this bench)"] = os.getpid()
            return asyncio.run(
                measure(edge_port, broker.bootstrap, rate, seconds, downloads, exactly_once, pids)
            )
        finally:
            for server in processes:
                server.stop()
            s3.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--fetch-wait-ms", type=int, help="the worker's (default: its own)")
    parser.add_argument(
        "--without-downloads", action="store_true", help="finished events name no object"
    )
    parser.add_argument(
        "--split", action="store_true", help="a fold worker and a fetch worker (worker roles)"
    )
    parser.add_argument(
        "--exactly-once", action="store_true", help="transactions (Kafka), read_committed"
    )
    parser.add_argument("--commit-interval-s", type=float, help="the workers' (default: theirs)")
    parser.add_argument(
        "--find-highest",
        default="",
        help="comma-separated rates, ascending: the highest the stack sustains, workers apart",
    )
    args = parser.parse_args()
    if args.find_highest:
        rates = tuple(float(rate) for rate in args.find_highest.split(","))
        print(table(highest_sustained(rates, args.seconds)))
        return
    downloads = not args.without_downloads
    figures = run(
        args.rate,
        args.seconds,
        args.fetch_wait_ms,
        downloads,
        args.split,
        args.exactly_once,
        args.commit_interval_s,
    )
    print(table(figures))


if __name__ == "__main__":
    main()

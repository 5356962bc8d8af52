"""Worker throughput: events/s folded by ``streamproc worker`` vs a plain Faust Table agent
and vs a bare aiokafka consume -> orjson -> two produces -> commit loop (the ceiling).

All consume the same raw topic (signed-edge-shaped events, 4 partitions) on the embedded
broker in this run; the ratios are what to compare across machines. Usage:

    .venv/bin/python bench/worker_throughput.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import bench_broker, broker_kind
from cpu import cpu_seconds
from report import Figure, table

from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.local.processes import free_port, stop_process

PARTITIONS = 4
HERE = Path(__file__).resolve().parent


PROVIDERS = ("openvidu", "daily", "acme")
"""``acme``: the Standard Webhooks provider mapped by deploy/standard-webhooks/example.toml."""
MAPPING = HERE.parent / "deploy" / "standard-webhooks" / "example.toml"


def events(count: int, provider: str = "openvidu") -> list[tuple[bytes, bytes, bytes]]:
    """(key, provider, body): OpenVidu started/updated/ending cycles, Daily
    ``recording.started`` twice per recording naming its instance (as Daily sends them; every
    such event links the instance for the join), or a mapped provider's started/stopping;
    no finished (no S3)."""
    if provider == "daily":
        return _daily_events(count)
    if provider == "acme":
        return _mapped_events(count)
    out = []
    statuses = ["STARTING", "ACTIVE", "ENDING"]
    for index in range(count):
        recording = f"bench-{index // 3:06d}"
        status = statuses[index % 3]
        body = orjson.dumps(
            {
                "creationDate": 1_700_000_000_000 + index,
                "event": "recordingStarted" if status == "STARTING" else "recordingUpdated",
                "data": {
                    "recordingId": recording,
                    "roomId": "bench-room",
                    "status": status,
                    "filename": f"{recording}.mp4",
                    "startDate": 1_700_000_000_000,
                },
            }
        )
        out.append((recording.encode(), b"openvidu", body))
    return out


def _daily_events(count: int) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for index in range(count):
        recording = f"bench-{index // 2:06d}"
        body = orjson.dumps(
            {
                "version": "1.0.0",
                "type": "recording.started",
                "id": f"bench-started-{index}",
                "payload": {
                    "recording_id": recording,
                    "instance_id": f"instance-{index // 2:06d}",
                    "room_name": "bench-room",
                    "start_ts": 1_700_000_000 + index // 1000,
                },
                "event_ts": 1_700_000_000 + index / 1000,  # as OpenVidu's: no stalls
            }
        )
        out.append((recording.encode(), b"daily", body))
    return out


def _mapped_events(count: int) -> list[tuple[bytes, bytes, bytes]]:
    """A mapped provider's ``recording.started`` then ``recording.stopping`` per recording."""
    out = []
    for index in range(count):
        recording = f"bench-{index // 2:06d}"
        body = orjson.dumps(
            {
                "type": "recording.stopping" if index % 2 else "recording.started",
                "timestamp": 1_700_000_000 + index / 1000,
                "data": {"recording": {"id": recording}, "room": "bench-room"},
            }
        )
        out.append((recording.encode(), b"acme", body))
    return out


async def produce(
    bootstrap: str, topic: str, items, partitions: int = PARTITIONS
) -> dict[int, int]:
    """Write all events; return the true end offset per partition (ListOffsets is unreliable)."""
    await ensure_topics(bootstrap, [TopicSpec(topic, partitions)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    ends: dict[int, int] = {}
    try:
        futures = [
            await producer.send(topic, body, key=key, headers=[("provider", provider)])
            for key, provider, body in items
        ]
        await producer.flush()
        for future in futures:
            metadata = future.result()
            ends[metadata.partition] = max(ends.get(metadata.partition, 0), metadata.offset + 1)
    finally:
        await producer.stop()
    return ends


async def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        total = 0
        for partition in range(partitions):
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


class Measured(NamedTuple):
    events_per_s: float
    cpu_us_per_event: float | None
    """The processes' user+sys CPU time over the same span, per event (None off Linux):
    it holds on a shared machine where events/s wanders. The span starts at the first commit
    seen, when a worker committing every second has already folded ~10k more events than it
    committed, whose CPU falls before the span; the end has no such lag (everything is
    committed). So a short run (40k events, ~5 s) reads ~25 % low in CPU per event and high
    in events/s, for the worker and the plain Faust agent alike; a 400k run, ~3 %."""
    growth: tuple[float, float] | None = None
    """CPU per event over the first and the last fifth of the events counted, in one run (a
    long one only): whether per-event work grows as the table does, with nothing else
    changed (a shorter run of its own differs in more than its table's size)."""


GROWTH_MIN_POLLS = 50
"""Runs measured over fewer polls (~0.5 s each) than this report no growth: a fifth of too
few samples would measure the polling."""


def growth(samples: list[tuple[int, float]]) -> tuple[float, float] | None:
    """CPU per event over the first and the last fifth of ``samples`` (events committed, CPU
    seconds), cut at the samples nearest a fifth of the events."""
    if len(samples) < GROWTH_MIN_POLLS:
        return None
    start, end = samples[0][0], samples[-1][0]
    fifth = (end - start) / 5

    def at(done: float) -> tuple[int, float]:
        return min(samples, key=lambda sample: abs(sample[0] - done))

    def per_event(low: tuple[int, float], high: tuple[int, float]) -> float:
        return (high[1] - low[1]) / max(high[0] - low[0], 1) * 1e6

    return (
        per_event(samples[0], at(start + fifth)),
        per_event(at(end - fifth), samples[-1]),
    )


async def measure(
    command, env, bootstrap, group, topic, total, label, processes: int = 1, partitions=PARTITIONS
) -> Measured:
    """Events/s and CPU time per event between the first and the last committed progress
    (start-up excluded) of ``processes`` copies of ``command`` in one group (``env(n)`` gives
    each its environment)."""
    running = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
            command, env=env(n), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for n in range(processes)
    ]
    launched = time.monotonic()
    pids = [process.pid for process in running]
    try:
        first_at, first_done, first_cpu = None, 0, None
        samples: list[tuple[int, float]] = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = await committed_total(bootstrap, group, topic, partitions)
            now, cpu = time.monotonic(), cpu_seconds(pids)
            if done and first_at is None:
                first_at, first_done, first_cpu = now, done, cpu
            if first_at is not None and cpu is not None:
                samples.append((done, cpu))
            if done >= total:
                if done - first_done < total // 5:  # too few events: count from the launch
                    print(f"  {label}: start-up included (too few events)", file=sys.stderr)
                    first_at, first_done, first_cpu = launched, 0, 0.0
                rate = (done - first_done) / max(now - first_at, 1e-6)
                per_event = None
                if cpu is not None and first_cpu is not None:
                    per_event = (cpu - first_cpu) / max(done - first_done, 1) * 1e6
                print(
                    f"  {label}: {rate:,.0f} events/s, {per_event or 0:,.0f} µs CPU/event",
                    file=sys.stderr,
                )
                return Measured(rate, per_event, growth(samples))
            print(f"  {label}: {done}/{total} committed", file=sys.stderr, flush=True)
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{label} did not finish in time")
    finally:
        for process in running:
            stop_process(process)


async def run(
    count: int = 30_000,
    batches: tuple[int, ...] = (1, 100, 500),
    race: tuple[int, ...] = (100,),
    providers: tuple[str, ...] = PROVIDERS,
    exactly_once: tuple[int, ...] = (100,),
    rocksdb: tuple[int, ...] = (),
) -> list[Figure]:
    """Per provider's events: the worker once per fold batch size (and per size in ``race``
    with STREAMPROC_DIRECT_DELIVERY=0, Faust's per-record race, in ``exactly_once`` with
    transactions, on Kafka only, and in ``rocksdb`` with its tables in RocksDB instead of
    memory), and both baselines, on the same raw topic."""
    figures = []
    with tempfile.TemporaryDirectory() as scratch, bench_broker() as broker:
        if broker_kind() != "kafka":
            exactly_once = ()  # Tansu has no transactions
        for provider in providers:
            folder = Path(scratch, provider)
            folder.mkdir()  # noqa: ASYNC240 - one directory, before anything runs
            figures += await _run_provider(
                broker.bootstrap,
                str(folder),
                provider,
                count,
                Variants(batches, race, exactly_once, rocksdb),
            )
    return figures


async def _run_provider(
    bootstrap: str,
    scratch: str,
    provider: str,
    count: int,
    variants: Variants,
) -> list[Figure]:
    topic = f"bench.raw.{provider}"
    total = sum((await produce(bootstrap, topic, events(count, provider))).values())
    baseline_env = {
        **os.environ,
        "BENCH_BOOTSTRAP": bootstrap,
        "BENCH_TOPIC": topic,
        "BENCH_GROUP": f"bench-baseline-{provider}",
        "BENCH_PARTITIONS": str(PARTITIONS),
        "BENCH_DATADIR": f"{scratch}/baseline",
        "BENCH_WEB_PORT": str(free_port()),
    }
    faust = await measure(
        [sys.executable, str(HERE / "faust_baseline.py")],
        lambda _: baseline_env,
        bootstrap,
        f"bench-baseline-{provider}",
        topic,
        total,
        f"plain Faust table agent, {provider}",
    )
    state_topic, lifecycle_topic = f"bare.state.{provider}", f"bare.lc.{provider}"
    await ensure_topics(
        bootstrap, [TopicSpec(state_topic, PARTITIONS), TopicSpec(lifecycle_topic, PARTITIONS)]
    )
    bare_env = {
        **baseline_env,
        "BENCH_GROUP": f"bench-bare-{provider}",
        "BENCH_STATE_TOPIC": state_topic,
        "BENCH_LC_TOPIC": lifecycle_topic,
    }
    bare = await measure(
        [sys.executable, str(HERE / "aiokafka_baseline.py")],
        lambda _: bare_env,
        bootstrap,
        f"bench-bare-{provider}",
        topic,
        total,
        f"bare aiokafka loop, {provider}",
    )
    figures = []
    measured: dict[tuple[int, str], Measured] = {}
    runs = [(batch, "", {}) for batch in variants.batches]
    runs += [(batch, "-race", {"STREAMPROC_DIRECT_DELIVERY": "0"}) for batch in variants.race]
    runs += [(batch, "-eos", EXACTLY_ONCE) for batch in variants.exactly_once]
    runs += [(batch, "-rocksdb", ROCKSDB) for batch in variants.rocksdb]
    for batch, suffix, extra in runs:
        name = f"{provider}-batch-{batch}{suffix}"
        worker = await measure(
            [sys.executable, "-m", "streamproc", "worker"],
            lambda _, batch=batch, name=name, extra=extra: {
                **worker_env(bootstrap, topic, f"{scratch}/{name}", batch, name),
                **extra,
            },
            bootstrap,
            f"bench-worker-{name}",
            topic,
            total,
            f"streamproc worker, {name}",
        )
        measured[batch, suffix] = worker
        label = f"worker, {provider} events, STREAMPROC_FOLD_BATCH={batch}"
        label += "".join(f", {key}={value}" for key, value in extra.items())
        label += f" ({total:,} events, {PARTITIONS} partitions)"
        rate = worker.events_per_s
        if suffix in ("-eos", "-rocksdb") and (batch, "") in measured:
            figures += _against_the_default(label, worker, measured[batch, ""], suffix)
        figures += [
            Figure(label, rate, "events/s", "plain Faust Table agent", faust.events_per_s, ">= 4"),
            Figure(label, rate, "events/s", "bare aiokafka loop", bare.events_per_s, ">= 0.5"),
        ]
        if worker.cpu_us_per_event:
            figures += [
                Figure(label, worker.cpu_us_per_event, "µs CPU/event", baseline, value, target)
                for baseline, value, target in (
                    ("plain Faust Table agent", faust.cpu_us_per_event, ""),
                    ("bare aiokafka loop", bare.cpu_us_per_event, "<= 2"),
                )
                if value
            ]
        if worker.growth:
            first, last = worker.growth
            figures.append(
                Figure(
                    f"{label}, its last fifth of the events",
                    last,
                    "µs CPU/event",
                    "its first fifth, same run",
                    first,
                    "~1 (no growth)",
                )
            )
    return figures


@dataclass(frozen=True)
class Variants:
    """Which worker runs to measure: fold batch sizes, and the batch sizes to run again with
    each non-default setting."""

    batches: tuple[int, ...]
    race: tuple[int, ...] = ()
    exactly_once: tuple[int, ...] = ()
    rocksdb: tuple[int, ...] = ()


EXACTLY_ONCE = {"STREAMPROC_PROCESSING_GUARANTEE": "exactly_once"}
ROCKSDB = {"STREAMPROC_TABLE_STORE": "rocksdb://"}
DEFAULT_NAMED = {"-eos": "at_least_once", "-rocksdb": "memory:// tables"}


def _against_the_default(
    label: str, worker: Measured, default: Measured, suffix: str
) -> list[Figure]:
    """A worker with one setting changed against the default one at the same batch size."""
    baseline = f"the same worker, {DEFAULT_NAMED[suffix]}, same run"
    figures = [Figure(label, worker.events_per_s, "events/s", baseline, default.events_per_s)]
    if worker.cpu_us_per_event and default.cpu_us_per_event:
        figures.append(
            Figure(
                label, worker.cpu_us_per_event, "µs CPU/event", baseline, default.cpu_us_per_event
            )
        )
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument(
        "--batches",
        default="1,100,500",
        help="STREAMPROC_FOLD_BATCH values to run the worker with (1 = one event at a time)",
    )
    parser.add_argument(
        "--race",
        default="100",
        help="batch sizes to run again with STREAMPROC_DIRECT_DELIVERY=0 (Faust's race)",
    )
    parser.add_argument("--providers", default=",".join(PROVIDERS), help="whose events")
    parser.add_argument(
        "--exactly-once",
        default="100",
        help="batch sizes to run again with STREAMPROC_PROCESSING_GUARANTEE=exactly_once "
        "(Kafka only)",
    )
    parser.add_argument(
        "--rocksdb",
        default="",
        help="batch sizes to run again with STREAMPROC_TABLE_STORE=rocksdb://",
    )
    args = parser.parse_args()
    batches = tuple(int(value) for value in args.batches.split(","))
    race = tuple(int(value) for value in args.race.split(",") if value)
    providers = tuple(name for name in args.providers.split(",") if name)
    exactly_once = tuple(int(value) for value in args.exactly_once.split(",") if value)
    rocksdb = tuple(int(value) for value in args.rocksdb.split(",") if value)
    print(table(await run(args.events, batches, race, providers, exactly_once, rocksdb)))


def worker_env(
    bootstrap: str, topic: str, data_dir: str, batch: int, name: str = ""
) -> dict[str, str]:
    """One worker's environment; workers with the same ``name`` form one group."""
    name = name or f"batch-{batch}"
    return {
        **os.environ,
        "STREAMPROC_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMPROC_RAW_TOPIC": topic,
        "STREAMPROC_APP_ID": f"bench-worker-{name}",
        "STREAMPROC_DATA_DIR": data_dir,
        "STREAMPROC_WORKER_WEB_PORT": str(free_port()),
        "STREAMPROC_LOG_LEVEL": "WARNING",
        "STREAMPROC_FOLD_BATCH": str(batch),
        "STREAMPROC_STATE_TOPIC": f"bench.state.{name}",
        "STREAMPROC_LIFECYCLE_TOPIC": f"bench.lc.{name}",
        "STREAMPROC_FETCH_TOPIC": f"bench.fetch.{name}",
        "STREAMPROC_DLQ_TOPIC": f"bench.dlq.{name}",
        "STREAMPROC_DOWNLOADS_TOPIC": f"bench.downloads.{name}",
        "STREAMPROC_STANDARD_WEBHOOKS_MAPPING": str(MAPPING),
    }


if __name__ == "__main__":
    asyncio.run(main())

"""Replay throughput and memory: ``streamproc replay`` folding a raw topic from offset 0 into
side topics (``--output-suffix``), vs reading the same topic with a bare aiokafka consumer
(the ceiling: no decode, no fold, no writes), in the same run on the embedded broker.

Prints events/s for both, the ratio, and the replay's peak RSS. Usage:

    .venv/bin/python bench/replay_throughput.py [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import bench_broker
from report import Figure, table
from worker_throughput import PARTITIONS, events, produce

from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.settings import Settings


async def bare_read(bootstrap: str, topic: str, ends: dict[int, int]) -> float:
    """Records/s of a plain consumer reading every partition from 0 to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, seen = time.monotonic(), 0
        while seen < sum(ends.values()):
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            seen += sum(len(records) for records in batch.values())
        return seen / (time.monotonic() - started)
    finally:
        await consumer.stop()


def replay(bootstrap: str, topic: str, dry_run: bool) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of ``streamproc replay --output-suffix bench``.

    The peak is the child's own high-water mark (``VmHWM``), read until it exits: wait4's
    ru_maxrss is no use here, as Linux carries the parent's peak across the exec of a
    vfork'd child (it reported this bench's own ~460 MiB as the replay's)."""
    env = {
        **os.environ,
        "STREAMPROC_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMPROC_RAW_TOPIC": topic,
        "STREAMPROC_LOG_LEVEL": "WARNING",
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamproc", "replay", "--output-suffix", "bench"]
        + (["--dry-run"] if dry_run else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak_kib = 0
    while process.poll() is None:
        peak_kib = max(peak_kib, _high_water_kib(process.pid))
        time.sleep(0.05)
    if process.returncode:
        raise RuntimeError(f"streamproc replay exited with {process.returncode}")
    return time.monotonic() - started, peak_kib / 1024


def _high_water_kib(pid: int) -> int:
    """The process's peak RSS so far (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def run(count: int = 100_000, dry_run: bool = False) -> list[Figure]:
    """The replay's rate against a bare read of the same topic, and its peak RSS."""
    with bench_broker() as broker:
        topic = "bench.raw"
        ends = await produce(broker.bootstrap, topic, events(count))
        total = sum(ends.values())
        bare = await bare_read(broker.bootstrap, topic, ends)
        if dry_run:  # it compares with the live state topic: an empty one here
            await ensure_topics(broker.bootstrap, [TopicSpec(Settings().state_topic, 1)])
        seconds, peak_mib = await asyncio.to_thread(replay, broker.bootstrap, topic, dry_run)
    mode = "dry run" if dry_run else "side topics written"
    name = f"replay from offset 0, {total:,} events, {mode} (start-up included)"
    return [
        Figure(name, total / seconds, "events/s", "bare aiokafka read of the topic", bare),
        Figure(f"replay peak RSS, {total:,} events", peak_mib, "MiB", target="<= 300 MB"),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--dry-run", action="store_true", help="replay without writing")
    args = parser.parse_args()
    print(table(await run(args.events, args.dry_run)))


if __name__ == "__main__":
    asyncio.run(main())

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
import resource
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_throughput import PARTITIONS, events, produce

from streamproc.broker import EmbeddedBroker
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
    """Seconds and peak RSS (MiB) of ``streamproc replay --output-suffix bench``."""
    env = {
        **os.environ,
        "STREAMPROC_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMPROC_RAW_TOPIC": topic,
        "STREAMPROC_LOG_LEVEL": "WARNING",
    }
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "streamproc", "replay", "--output-suffix", "bench"]
        + (["--dry-run"] if dry_run else []),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kib / 1024


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--dry-run", action="store_true", help="replay without writing")
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        topic = "bench.raw"
        ends = await produce(broker.bootstrap, topic, events(args.events))
        total = sum(ends.values())
        print(f"{total} events in {topic} ({PARTITIONS} partitions), embedded broker")
        bare = await bare_read(broker.bootstrap, topic, ends)
        if args.dry_run:  # it compares with the live state topic: an empty one here
            await ensure_topics(broker.bootstrap, [TopicSpec(Settings().state_topic, 1)])
        print(f"bare aiokafka read              {bare:10,.0f} events/s")
        seconds, peak_mib = await asyncio.to_thread(replay, broker.bootstrap, topic, args.dry_run)
        rate = total / seconds
        mode = "dry run" if args.dry_run else "with writes"
        print(f"streamproc replay ({mode}) {rate:10,.0f} events/s  (start-up included)")
        print(f"replay peak RSS: {peak_mib:,.0f} MiB")
        print(f"ratio replay / bare read: {rate / bare:.2f}")


if __name__ == "__main__":
    asyncio.run(main())

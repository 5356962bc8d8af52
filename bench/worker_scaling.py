"""Worker scaling: events/s of 1, 2 and 4 ``streamproc worker`` processes in one consumer
group on an 8-partition raw topic, as ratios to one worker in the same run.

On a 2-core machine shared with the broker this shows the cost of more members (rebalances,
one producer and consumer each), not the gain a cluster would see: see bench/README.md.
Usage:

    .venv/bin/python bench/worker_scaling.py [--events 40000] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import bench_broker
from report import Figure, table
from worker_throughput import events, measure, produce, worker_env

from streamproc.settings import Settings

PARTITIONS = 8


async def run(count: int = 40_000, workers: tuple[int, ...] = (1, 2, 4)) -> list[Figure]:
    batch = Settings().fold_batch
    with tempfile.TemporaryDirectory() as scratch, bench_broker() as broker:
        topic = "bench.scaling.raw"
        ends = await produce(broker.bootstrap, topic, events(count), PARTITIONS)
        total = sum(ends.values())
        rates: dict[int, float] = {}
        for members in workers:
            name = f"scaling-{members}"
            measured = await measure(
                [sys.executable, "-m", "streamproc", "worker"],
                lambda n, name=name: worker_env(
                    broker.bootstrap, topic, f"{scratch}/{name}-{n}", batch, name
                ),
                broker.bootstrap,
                f"bench-worker-{name}",
                topic,
                total,
                f"{members} worker(s)",
                processes=members,
                partitions=PARTITIONS,
            )
            rates[members] = measured.events_per_s
    one = rates[workers[0]]
    return [
        Figure(
            f"scaling: {members} worker(s), {PARTITIONS} partitions ({total:,} events)",
            rate,
            "events/s",
            f"{workers[0]} worker(s), same run",
            one,
            "(2 cores: overhead)",
        )
        for members, rate in rates.items()
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    workers = tuple(int(value) for value in args.workers.split(","))
    print(table(await run(args.events, workers)))


if __name__ == "__main__":
    asyncio.run(main())

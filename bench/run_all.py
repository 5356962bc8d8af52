"""Every benchmark of issue 10 in one run, printed as one table (the one bench/README.md keeps).

Each figure has its baseline measured in the same run on the same broker, and the ratio; the
machines are shared and noisy, so compare ratios. ``--smoke`` runs each at a tiny size, to
prove they still work (CI does this); the default sizes take about 25 minutes on 2 cores;
``--full`` uses issue 10's sizes (1M replayed events, 60 s of end-to-end load). Usage:

    .venv/bin/python bench/run_all.py [--smoke | --full] [--only worker,edge,...]
        [--broker tansu|kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import downloads_throughput
import e2e_latency
import edge_throughput
import replay_throughput
import worker_scaling
import worker_throughput
from brokers import BROKERS, DESCRIBED, broker_kind
from report import Figure, table


@dataclass(frozen=True)
class Sizes:
    worker_events: int
    batches: tuple[int, ...]
    scaling_events: int
    edge_seconds: int
    e2e_rate: float
    e2e_seconds: float
    replay_events: int
    downloads: tuple[int, int, int]  # count, MB each, large MB
    sustained_rates: tuple[float, ...] = (50, 100)
    """Webhooks/s to try, ascending, for the highest rate the whole stack sustains."""
    sustained_seconds: float = 2
    worker_large_events: int = 0
    """Again at batch 100 with this many events (0: not), to see the rate as the table grows,
    with the tables in memory and in RocksDB."""


QUIET_RATE = 5  # webhooks/s: each fetch finds at most a record or two
DOWNLOAD_RATE = 200  # webhooks/s: 100 recordings/s finished (a started and a finished each)

SIZES = {
    "smoke": Sizes(900, (100,), 1_200, 1, 50, 2, 900, (2, 1, 4), (50,)),
    "default": Sizes(
        30_000, (1, 100, 500), 40_000, 10, 1000, 30, 100_000, (200, 5, 1024), (200, 400, 600), 20
    ),
    "full": Sizes(
        40_000,
        (1, 100, 500),
        80_000,
        20,
        1000,
        60,
        1_000_000,
        (200, 5, 1024),
        (200, 300, 400, 500, 600, 800, 1000),
        30,
        400_000,
    ),
}


def benchmarks(sizes: Sizes) -> dict[str, Callable[[], list[Figure]]]:
    return {
        "worker": lambda: (
            asyncio.run(worker_throughput.run(sizes.worker_events, sizes.batches))
            + (
                asyncio.run(
                    worker_throughput.run(
                        sizes.worker_large_events, (100,), race=(), exactly_once=(), rocksdb=(100,)
                    )
                )
                if sizes.worker_large_events
                else []
            )
        ),
        "scaling": lambda: asyncio.run(worker_scaling.run(sizes.scaling_events)),
        "edge": lambda: edge_throughput.run(sizes.edge_seconds),
        "e2e": lambda: (
            e2e_latency.run(QUIET_RATE, sizes.e2e_seconds)  # a quiet stream: the fetch wait shows
            + e2e_latency.run(sizes.e2e_rate, sizes.e2e_seconds)
            + e2e_latency.run(sizes.e2e_rate, sizes.e2e_seconds, fetch_wait_ms=20)
            + e2e_latency.run(sizes.e2e_rate, sizes.e2e_seconds, fetch_wait_ms=20, split=True)
            + e2e_latency.run(  # 100 recordings/s finished: how soon each is downloaded
                DOWNLOAD_RATE, sizes.e2e_seconds, fetch_wait_ms=20, split=True
            )
            + e2e_latency.run(  # the fold's own latency: no S3 reads beside it
                sizes.e2e_rate, sizes.e2e_seconds, fetch_wait_ms=20, split=True, downloads=False
            )
            + (exactly_once_latency(sizes) if broker_kind() == "kafka" else [])
            + e2e_latency.highest_sustained(sizes.sustained_rates, sizes.sustained_seconds)
        ),
        "replay": lambda: asyncio.run(replay_throughput.run(sizes.replay_events)),
        "downloads": lambda: downloads_throughput.run(*sizes.downloads),
    }


def exactly_once_latency(sizes: Sizes) -> list[Figure]:
    """What a ``read_committed`` consumer waits for with transactions: the commit interval
    (the default, then a tenth of it)."""
    return [
        figure
        for interval in (None, 0.1)
        for figure in e2e_latency.run(
            sizes.e2e_rate,
            sizes.e2e_seconds,
            fetch_wait_ms=20,
            split=True,
            exactly_once=True,
            commit_interval_s=interval,
        )
    ]


def machine() -> str:
    memory_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{memory_kib / 1024 / 1024:.0f} GiB, Python {platform.python_version()}, "
        f"{DESCRIBED[broker_kind()]}, commit {commit or 'unknown'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="tiny sizes: does each still run")
    size.add_argument("--full", action="store_true", help="issue 10's sizes (slow)")
    parser.add_argument("--only", default="", help="comma-separated names of benchmarks")
    parser.add_argument("--broker", choices=BROKERS, default="tansu", help="default: tansu")
    args = parser.parse_args()
    os.environ["STREAMPROC_BENCH_BROKER"] = args.broker
    sizes = SIZES["smoke" if args.smoke else "full" if args.full else "default"]
    chosen = benchmarks(sizes)
    wanted = [name for name in args.only.split(",") if name] or list(chosen)
    unknown = sorted(set(wanted) - chosen.keys())
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(chosen)}")
    figures: list[Figure] = []
    for name in wanted:
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        figures += chosen[name]()
        print(f"{name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    print(machine())
    print(table(figures, args.broker))


if __name__ == "__main__":
    main()

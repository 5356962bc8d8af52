"""Where the worker's CPU goes, by package: ``streamproc worker`` under cProfile folding one
provider's events, its main thread's time split by the package each function lives in.

cProfile, not py-spy: py-spy samples at system-call boundaries on these machines and
over-counts them (docs/notes/performance-history.md). Its clock is the main thread's CPU time,
so waiting counts for nothing; its own cost inflates every function call alike, so read the
shares, not the seconds. Faust's consumer thread is not in it. Usage:

    .venv/bin/python bench/worker_profile.py [--events 40000] [--provider daily] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import bench_broker
from worker_throughput import committed_total, events, produce, worker_env

from streamproc.local.processes import stop_process

PROFILED = """
import cProfile, runpy, sys, time
profiler = cProfile.Profile(time.thread_time)
sys.argv = ["streamproc", "worker"]
try:
    profiler.runcall(runpy.run_module, "streamproc", run_name="__main__")
except SystemExit:
    pass
finally:
    profiler.dump_stats(sys.orig_argv[-1])
"""
"""The worker under a profiler counting its main thread's CPU time; the last argument names
the file for the profile."""

PACKAGES = (
    "streamproc",
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "orjson",
    "uvloop",
    "asyncio",
    "aiobotocore",
    "botocore",
    "aiohttp",
    "dateutil",
    "tenacity",
    "pathlib",
)


def package_of(filename: str) -> str:
    """The package a profiled function's file belongs to; C builtins are ``~``."""
    if filename == "~":
        return "C builtins (orjson, hashing, dict and list methods, ...)"
    parts = Path(filename).parts
    for package in PACKAGES:
        if package in parts:
            if package == "streamproc":  # our own layers apart: worker, derivation, core, ...
                inside = parts[parts.index(package) + 1 :]
                return f"streamproc/{inside[0]}" if len(inside) > 1 else package
            return package
    return "other Python (standard library)"


async def profile(count: int, provider: str, output: Path) -> float:
    """Folds ``count`` events under cProfile; the seconds it took."""
    with tempfile.TemporaryDirectory() as scratch, bench_broker() as broker:
        topic = f"profile.raw.{provider}"
        total = sum((await produce(broker.bootstrap, topic, events(count, provider))).values())
        name = f"profile-{provider}"
        env = worker_env(broker.bootstrap, topic, scratch, 100, name)
        command = [sys.executable, "-c", PROFILED, str(output)]
        worker = subprocess.Popen(command, env=env)  # noqa: ASYNC220 - started once
        started = time.monotonic()
        try:
            while await committed_total(broker.bootstrap, f"bench-worker-{name}", topic, 4) < total:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker ended ({worker.returncode}) before folding")
                if time.monotonic() - started > 900:
                    raise RuntimeError("the worker did not fold every event in 15 minutes")
                await asyncio.sleep(0.5)
            return time.monotonic() - started
        finally:
            stop_process(worker, 60)  # the profile is written as the worker exits


def by_package(output: Path) -> Counter[str]:
    """Each package's own (not cumulative) time."""
    stats = pstats.Stats(str(output)).stats  # type: ignore[attr-defined]
    shares: Counter[str] = Counter()
    for (filename, _, _), (_, _, own, _, _) in stats.items():
        shares[package_of(filename)] += own
    return shares


def print_profile(output: Path, top: int) -> None:
    """Own time by package (a Markdown table), then the ``top`` functions by own time."""
    shares = by_package(output)
    total = sum(shares.values())
    print("| package | own time | share |\n| --- | --- | --- |")
    for package, own in shares.most_common():
        print(f"| {package} | {own:.2f} s | {own / total:.0%} |")
    print()
    pstats.Stats(str(output)).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--provider", default="daily")
    parser.add_argument("--top", type=int, default=25, help="functions by own time to list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder, "worker.prof")
        seconds = asyncio.run(profile(args.events, args.provider, output))
        print(f"{args.events:,} {args.provider} events folded in {seconds:.0f} s under cProfile")
        print_profile(output, args.top)


if __name__ == "__main__":
    main()

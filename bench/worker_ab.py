"""A worker change against the code before it, in the same run: ``streamproc worker`` from
this checkout and from another (``--against``, e.g. a ``git worktree`` of the commit before),
taking turns on the same raw topic, per provider's events.

Both are measured alike (``worker_throughput.measure``: CPU per event from the first commit),
so the ratio holds where the absolute figures wander; the turns alternate (A B B A ...) so a
busy spell on the shared machine falls on both. Usage:

    git worktree add --detach /tmp/before HEAD~1
    .venv/bin/python bench/worker_ab.py --against /tmp/before [--events 40000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import bench_broker
from report import Figure, table
from worker_throughput import PROVIDERS, events, measure, produce, worker_env

WORKER = [sys.executable, "-m", "streamproc", "worker"]


async def compare(
    bootstrap: str, scratch: str, provider: str, count: int, against: Path, rounds: int
) -> list[Figure]:
    topic = f"ab.raw.{provider}"
    total = sum((await produce(bootstrap, topic, events(count, provider))).values())
    checkouts = {"this checkout": None, "--against": str(against)}
    cpu: dict[str, list[float]] = {name: [] for name in checkouts}
    for turn in range(rounds):
        order = list(checkouts) if turn % 2 == 0 else list(reversed(checkouts))
        for which in order:
            name = f"{provider}-{'new' if checkouts[which] is None else 'old'}-{turn}"
            env = worker_env(bootstrap, topic, f"{scratch}/{name}", 100, name)
            if checkouts[which] is not None:
                env["PYTHONPATH"] = checkouts[which]
            measured = await measure(
                WORKER,
                lambda _, env=env: env,
                bootstrap,
                f"bench-worker-{name}",
                topic,
                total,
                name,
            )
            if measured.cpu_us_per_event is not None:
                cpu[which].append(measured.cpu_us_per_event)
    new, old = (statistics.median(cpu[which]) for which in checkouts)
    return [
        Figure(
            f"worker, {provider} events ({count:,}, median of {rounds})",
            new,
            "µs CPU/event",
            f"the worker from {against}",
            old,
        )
    ]


async def run(count: int, against: Path, rounds: int, providers: tuple[str, ...]) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as scratch, bench_broker() as broker:
        for provider in providers:
            figures += await compare(broker.bootstrap, scratch, provider, count, against, rounds)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--providers", default=",".join(PROVIDERS), help="whose events")
    args = parser.parse_args()
    if not (args.against / "streamproc" / "__init__.py").is_file():
        parser.error(f"{args.against} holds no streamproc checkout")
    providers = tuple(name for name in args.providers.split(",") if name)
    figures = asyncio.run(run(args.events, args.against.resolve(), args.rounds, providers))
    print(table(figures))


if __name__ == "__main__":
    main()

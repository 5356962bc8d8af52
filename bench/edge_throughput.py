"""Edge throughput and latency: signed webhooks/s answered 200 after Kafka's acks=all.

Baselines in the same run, on the same broker and machine: a bare ASGI app that only answers
200 under the same uvicorn and wrk load (Debian package ``wrk``), and the acked-publish
ceiling of one aiokafka producer (the edge's body and headers, acks=all, as many concurrent
publishes as wrk has connections). Then the edge's p50/p99 latency at half its measured
maximum rate, and its p99 at 20 % and 30 % of it, from an open-loop generator
(``loadgen.py``), each with the generator's own lateness. Usage:

    .venv/bin/python bench/edge_throughput.py [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import uvloop
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import bench_broker
from cpu import cpu_seconds, with_children
from loadgen import Request, open_loop, percentile
from report import Figure, table

from streamproc.local.processes import ServerProcess, free_port
from streamproc.providers import daily
from streamproc.settings import Settings

HERE = Path(__file__).resolve().parent
KEY = b"bench-secret-key"
BODY = (HERE.parent / "schemas/examples/daily/recording.started.json").read_bytes()


class Load(NamedTuple):
    rate: float
    """Requests/s."""
    errors: int
    """Non-2xx answers."""
    cpu_us_per_request: float | None
    """The server's processes' user+sys CPU time over the load, per request."""


def load(
    url: str, seconds: int, connections: int, headers: dict[str, str], server: ServerProcess
) -> Load:
    """wrk against ``server``, with its processes' CPU time over the same span."""
    pids = with_children(server.process.pid)
    before = cpu_seconds(pids)
    requests, errors = wrk(url, seconds, connections, headers)
    after = cpu_seconds(pids)
    cpu = None if None in (before, after) else (after - before) * 1e6 / max(requests, 1)
    return Load(requests / seconds, errors, cpu)


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> tuple[int, int]:
    """Requests answered and the number of non-2xx answers."""
    script = "\n".join(
        ['wrk.method = "POST"', f"wrk.body = {lua_string(BODY)}"]
        + [
            f"wrk.headers[{lua_string(k.encode())}] = {lua_string(v.encode())}"
            for k, v in headers.items()
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        output = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", handle.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return requests, int(errors.group(1)) if errors else 0


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def serve(name: str, command: list[str], env: dict[str, str], port: int) -> ServerProcess:
    server = ServerProcess(name, "127.0.0.1", port, env)
    server.start(command, 30)
    return server


async def producer_ceiling(bootstrap: str, seconds: float, concurrency: int) -> float:
    """Messages/s of one acks=all producer with ``concurrency`` publishes always in flight."""
    topic = Settings().raw_topic
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    headers = [("provider", b"daily"), ("event-id", b"bench"), ("event-type", b"recording")]
    done = 0
    try:
        deadline = time.monotonic() + seconds

        async def publisher(key: bytes) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await producer.send_and_wait(topic, BODY, key=key, headers=headers)
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(publisher(f"k{n}".encode()) for n in range(concurrency)))
        return done / (time.monotonic() - started)
    finally:
        await producer.stop()


class Latency(NamedTuple):
    p50_ms: float
    p99_ms: float
    lateness_p99_ms: float
    """The generator's own lateness: a part of the figures above (it shares the cores)."""
    failed: int
    """Answers that were not 2xx."""


async def latency_at(port: int, rate: float, seconds: float) -> Latency:
    """The edge's latency at ``rate`` requests/s, open loop."""
    headers = {
        "Content-Type": "application/json",
        **daily.SCHEME.signed_headers(KEY, BODY, str(int(time.time()))),
    }
    requests = [Request("/webhooks/daily", headers, BODY)] * max(1, int(rate * seconds))
    answers = await open_loop("127.0.0.1", port, requests, rate)
    latencies = [answer.latency * 1000 for answer in answers]
    lateness = [answer.lateness * 1000 for answer in answers]
    failed = sum(1 for answer in answers if not 200 <= answer.status < 300)
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    return Latency(p50, p99, percentile(lateness, 0.99), failed)


LOWER_SHARES = (0.2, 0.3)
"""Where the p99 stands below half the maximum: on two cores shared with the generator and
the broker, the half-rate figure measures the machine as much as the edge."""


def _uvicorn(app: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), app, "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def run(seconds: int = 10, connections: int = 64) -> list[Figure]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    headers = {
        "Content-Type": "application/json",
        **daily.SCHEME.signed_headers(KEY, BODY, str(int(time.time()))),
    }
    with bench_broker() as broker:
        port = free_port()
        baseline = serve("bare ASGI app", _uvicorn("minimal_asgi:app", port), {}, port)
        try:
            bare = load(f"http://127.0.0.1:{port}/", seconds, connections, headers, baseline)
        finally:
            baseline.stop()
        ceiling = asyncio.run(producer_ceiling(broker.bootstrap, seconds, connections))
        port = free_port()
        env = {
            "STREAMPROC_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STREAMPROC_EDGE_PORT": str(port),
            "STREAMPROC_DAILY_SECRETS": base64.b64encode(KEY).decode(),
            "STREAMPROC_DEDUPE_WINDOW_S": "0",
        }
        url = f"http://127.0.0.1:{port}/webhooks/daily"
        edge = serve("edge", [sys.executable, "-m", "streamproc", "edge"], env, port)
        try:
            one = load(url, seconds, connections, headers, edge)
            p50, p99, late, failed = uvloop.run(latency_at(port, one.rate / 2, seconds))
            lower = {
                share: uvloop.run(latency_at(port, one.rate * share, seconds))
                for share in LOWER_SHARES
            }
        finally:
            edge.stop()
        two_env = {**env, "STREAMPROC_EDGE_PROCESSES": str(EDGE_PROCESSES)}
        edges = serve("edges", [sys.executable, "-m", "streamproc", "edge"], two_env, port)
        try:
            wait_for_processes(edges, EDGE_PROCESSES)
            two = load(url, seconds, connections, headers, edges)
        finally:
            edges.stop()
    failed += sum(result.failed for result in lower.values())
    errors = one.errors + two.errors
    if errors or failed:
        raise RuntimeError(f"the edge answered non-2xx: {errors} under wrk, {failed} open loop")
    edge = "edge: signed Daily webhook -> verified -> acks=all publish -> 200"
    edges = f"{edge}, STREAMPROC_EDGE_PROCESSES={EDGE_PROCESSES}"
    producer = f"one aiokafka producer, {connections} acked publishes in flight"
    half = f"at half that rate ({one.rate / 2:,.0f}/s, open loop)"
    bare_app = "bare ASGI app (uvicorn, wrk)"
    return [
        Figure(edge, one.rate, "req/s", bare_app, bare.rate, ">= 0.55"),
        Figure(edge, one.rate, "req/s", producer, ceiling, ">= 0.8"),
        *_cpu_figures(edge, one, bare, bare_app),
        Figure(edges, two.rate, "req/s", "one edge process, same run", one.rate),
        *_cpu_figures(edges, two, one, "one edge process, same run"),
        Figure(f"edge p50 latency {half}", p50, "ms"),
        Figure(f"edge p99 latency {half}", p99, "ms", target="<= 10 ms"),
        Figure(f"of which the load generator's own lateness, p99 {half}", late, "ms"),
        *(
            Figure(
                f"edge p99 latency at {share:.0%} of that rate ({one.rate * share:,.0f}/s, "
                f"open loop; the generator's own lateness p99 {result.lateness_p99_ms:.1f} ms)",
                result.p99_ms,
                "ms",
            )
            for share, result in lower.items()
        ),
    ]


EDGE_PROCESSES = 2


def wait_for_processes(server: ServerProcess, count: int, timeout_s: float = 30) -> None:
    """Until the supervisor has its ``count`` worker processes and each has had time to
    start (the port is bound before they are)."""
    deadline = time.monotonic() + timeout_s
    while len(with_children(server.process.pid)) < count + 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: fewer than {count} processes")
        time.sleep(0.1)
    time.sleep(3)


def _cpu_figures(name: str, measured: Load, baseline: Load, baseline_name: str) -> list[Figure]:
    if measured.cpu_us_per_request is None or baseline.cpu_us_per_request is None:
        return []
    return [
        Figure(
            name,
            measured.cpu_us_per_request,
            "µs CPU/request",
            baseline_name,
            baseline.cpu_us_per_request,
            "<= 2" if baseline_name.startswith("bare") else "",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    print(table(run(args.seconds, args.connections)))


if __name__ == "__main__":
    main()

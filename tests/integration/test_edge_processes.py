"""``STREAMPROC_EDGE_PROCESSES``: several edge processes on one port, as one edge to its
clients: the supervisor runs that many processes, every webhook answered 200 is in the raw
topic, any process's ``/metrics`` counts them all, and SIGTERM stops every process. (Which
process accepts a connection is the kernel's choice; the bench measures what two bring.)"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from streamproc.kafka.topics import TopicSpec, ensure_topics

from helpers import alive, children_of, read_topic, signed, start_edge

pytestmark = pytest.mark.integration
PROCESSES = 2
WEBHOOKS = 200


def wait_for_ready(log_path: Path, processes: int) -> set[int]:
    """The edge processes' pids, once each has its producer and takes requests."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = set(re.findall(r"edge process (\d+) ready", log_path.read_text(errors="replace")))
        if len(ready) == processes:
            return {int(pid) for pid in ready}
        time.sleep(0.1)
    raise AssertionError(log_path.read_text(errors="replace")[-2000:])


def published_by(pid: int, scratch: Path) -> float:
    """What one edge process counted as published: its own files of the shared metrics
    directory (named after its pid), read by prometheus_client's collector."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    shared = next(e for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
    scratch.mkdir()
    for path in Path(shared.split(b"=", 1)[1].decode()).glob(f"*_{pid}.db"):
        shutil.copy(path, scratch)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(scratch))
    value = registry.get_sample_value(
        "streamproc_edge_requests_total", {"outcome": "published", "provider": "daily"}
    )
    return value or 0.0


def body(index: int) -> bytes:
    return orjson.dumps(
        {
            "version": "1.0.0",
            "type": "recording.started",
            "id": f"processes-{index}",
            "event_ts": 1_700_000_000 + index,
            "payload": {"recording_id": f"rec-{index}", "room_name": "processes-room"},
        }
    )


async def test_two_edge_processes_serve_one_port_and_one_metrics(broker, tmp_path):
    raw_topic = f"processes-{uuid.uuid4().hex[:6]}.raw"
    await ensure_topics(broker.bootstrap, [TopicSpec(raw_topic, 4)])
    edge = start_edge(
        broker.bootstrap,
        raw_topic,
        tmp_path / "edge.log",
        STREAMPROC_EDGE_PROCESSES=str(PROCESSES),
    )
    try:
        ready = wait_for_ready(tmp_path / "edge.log", PROCESSES)
        workers = [pid for pid in children_of(edge.process.pid) if "spawn" in _cmdline(pid)]
        assert len(workers) == PROCESSES, (workers, _cmdline(edge.process.pid))

        async def post(client: httpx.AsyncClient, index: int) -> int:
            content = body(index)
            response = await client.post(
                "/webhooks/daily", content=content, headers=signed("daily", content)
            )
            return response.status_code

        limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
        async with httpx.AsyncClient(base_url=edge.url, timeout=30, limits=limits) as client:
            codes = await asyncio.gather(*(post(client, index) for index in range(WEBHOOKS)))
            metrics = (await client.get("/metrics")).text
        assert codes == [200] * WEBHOOKS
        published = re.search(
            r'^streamproc_edge_requests_total\{outcome="published",provider="daily"\} (\S+)$',
            metrics,
            re.M,
        )
        assert published and float(published.group(1)) == WEBHOOKS, metrics[:2000]
        per_process = {pid: published_by(pid, tmp_path / f"metrics-{pid}") for pid in ready}
        assert sum(per_process.values()) == WEBHOOKS
        assert all(count > 0 for count in per_process.values()), per_process
        records = await read_topic(broker.bootstrap, raw_topic, expect=WEBHOOKS, timeout_s=30)
        assert sorted(orjson.loads(r.value)["id"] for r in records) == sorted(
            f"processes-{index}" for index in range(WEBHOOKS)
        )
    finally:
        edge.process.send_signal(signal.SIGTERM)
        assert edge.process.wait(timeout=30) == 0
    assert [pid for pid in workers if alive(pid)] == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""

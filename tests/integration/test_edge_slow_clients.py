"""Slow and idle clients cannot hold the edge: a request head must finish within
STREAMPROC_HEADER_TIMEOUT_S and a body within STREAMPROC_BODY_TIMEOUT_S, while valid senders
keep being answered (1,000 connections held open at once)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest

from streamproc.local.processes import stop_process

from helpers import example, read_topic, signed, start_edge

pytestmark = pytest.mark.integration
SLOW_CLIENTS = 800
IDLE_CLIENTS = 200
TIMEOUT_S = 1.0


@pytest.fixture
def strict_edge(broker):
    edge = start_edge(
        broker.bootstrap,
        "slow-clients.raw",
        STREAMPROC_HEADER_TIMEOUT_S=str(TIMEOUT_S),
        STREAMPROC_BODY_TIMEOUT_S=str(TIMEOUT_S),
    )
    try:
        yield edge
    finally:
        stop_process(edge.process)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """What the edge sends before it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout=TIMEOUT_S * 10)


async def test_slowloris_heads_are_cut_off_while_valid_senders_are_served(strict_edge):
    host, port = strict_edge.url.removeprefix("http://").split(":")
    rss_before = _rss_kib(strict_edge.process.pid)
    slow = []
    for _ in range(SLOW_CLIENTS):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /webhooks/daily HTTP/1.1\r\nHost: edge\r\nX-Trickle: a")
        slow.append((reader, writer))
    await asyncio.gather(*(writer.drain() for _, writer in slow))
    idle = [await asyncio.open_connection(host, int(port)) for _ in range(IDLE_CLIENTS)]
    rss_with_slow_clients = _rss_kib(strict_edge.process.pid)

    body = example("daily", "recording.started")
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=strict_edge.url, timeout=10) as client:
        response = await client.post("/webhooks/daily", content=body, headers=signed("daily", body))
    served_in = time.monotonic() - started
    assert response.status_code == 200, response.text

    answers = await asyncio.gather(*(_answer(reader) for reader, _ in slow))
    silences = await asyncio.gather(*(_answer(reader) for reader, _ in idle))
    for _, writer in slow + idle:
        writer.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers[:3]
    assert silences == [b""] * IDLE_CLIENTS  # a connection that never spoke is just closed
    assert orjson.loads(answers[0].split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"
    grown_mib = (rss_with_slow_clients - rss_before) / 1024
    print(
        f"\n{SLOW_CLIENTS} slowloris and {IDLE_CLIENTS} idle connections: edge RSS "
        f"{rss_with_slow_clients / 1024:.1f} MiB (+{grown_mib:.1f}); a valid webhook answered in "
        f"{served_in * 1000:.0f} ms meanwhile; all cut off"
    )
    assert grown_mib < 64
    published = await read_topic(strict_edge.bootstrap, "slow-clients.raw", expect=1)
    assert len(published) == 1


async def test_a_body_that_stops_coming_gets_408(strict_edge):
    host, port = strict_edge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = example("daily", "recording.started")
    head = (
        b"POST /webhooks/daily HTTP/1.1\r\nHost: edge\r\ncontent-type: application/json\r\n"
        + b"content-length: %d\r\n\r\n" % len(body)
    )
    writer.write(head + body[:10])
    await writer.drain()
    answer = await _answer(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"

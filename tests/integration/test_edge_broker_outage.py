"""With the broker down the edge answers 503 + Retry-After, and recovers without a restart."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from streamproc.local.broker import EmbeddedBroker
from streamproc.local.processes import stop_process

from helpers import example, read_topic, signed, start_edge

pytestmark = pytest.mark.integration


def _event(event_id: str) -> bytes:
    document = orjson.loads(example("daily", "recording.started"))
    return orjson.dumps({**document, "id": event_id})


async def test_broker_outage_gives_503_then_recovers(tmp_path):
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    edge = start_edge(
        broker.bootstrap,
        "raw-outage",
        STREAMPROC_PUBLISH_TIMEOUT_S="2",
        STREAMPROC_RETRY_AFTER_S="7",
    )
    try:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
            before = _event("before-outage")
            response = await client.post(
                "/webhooks/daily", content=before, headers=signed("daily", before)
            )
            assert response.status_code == 200

            broker.stop()
            during = _event("during-outage")
            response = await client.post(
                "/webhooks/daily", content=during, headers=signed("daily", during)
            )
            assert response.status_code == 503
            assert response.headers["retry-after"] == "7"
            assert response.json()["error"] == "broker_unavailable"
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200

            broker.start()
            after = _event("after-outage")
            deadline = time.monotonic() + 60
            while True:
                response = await client.post(
                    "/webhooks/daily", content=after, headers=signed("daily", after)
                )
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                assert response.status_code == 503
                await asyncio.sleep(0.5)
            assert response.status_code == 200, response.text
            assert (await client.get("/readyz")).status_code == 200
        records = await read_topic(broker.bootstrap, "raw-outage", expect=1)
        assert after in [r.value for r in records]
    finally:
        stop_process(edge.process)
        broker.stop()

"""``STREAMPROC_WORKER_ROLE``: the fold and the downloads in processes of their own.

A ``fold`` worker and a ``fetch`` worker on the same topics: the recording is folded by
one and downloaded by the other (each process's own counters say which did what), and
``streamproc status`` reads the fetch requests' lag from the fetch workers' group.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest

from streamproc.local.processes import stop_process
from streamproc.ops.status import gather_status
from streamproc.settings import Settings

from helpers import (
    example,
    s3_client,
    signed,
    start_edge,
    start_worker,
    wait_for_messages,
    worker_env,
)

pytestmark = pytest.mark.integration

OPENVIDU_KEY = "room-123/room-123--XX445.mp4"


def _events(worker, outcome: str) -> int:
    """This worker process's ``streamproc_worker_events_total{outcome=...}``."""
    port = worker.env["STREAMPROC_WORKER_WEB_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.search(rf'^streamproc_worker_events_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


async def test_a_fold_worker_and_a_fetch_worker_share_the_work(broker, s3_endpoint, tmp_path):
    prefix = f"roles-{uuid.uuid4().hex[:6]}"
    env = worker_env(broker.bootstrap, s3_endpoint, prefix, tmp_path / "downloads")
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key=OPENVIDU_KEY, Body=b"mp4" * 1000)
    edge = start_edge(broker.bootstrap, env["STREAMPROC_RAW_TOPIC"], tmp_path / "edge.log")
    folder = start_worker({**env, "STREAMPROC_WORKER_ROLE": "fold"}, tmp_path / "worker-fold.log")
    fetcher = start_worker(
        {**env, "STREAMPROC_WORKER_ROLE": "fetch"}, tmp_path / "worker-fetch.log"
    )
    try:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
            for name in ("recordingStarted", "recordingEnded"):
                body = example("openvidu", name)
                response = await client.post(
                    "/webhooks/openvidu", content=body, headers=signed("openvidu", body)
                )
                assert response.status_code == 200, response.text
        downloads = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) >= 1
        )
        assert [d["source"]["key"] for d in downloads] == [OPENVIDU_KEY]
        assert [p.name for p in (tmp_path / "downloads").rglob("*.mp4")] == ["room-123--XX445.mp4"]

        assert _events(folder, "folded") == 2 and _events(folder, "downloaded") == 0
        assert _events(fetcher, "downloaded") == 1 and _events(fetcher, "folded") == 0

        settings = Settings.from_env(env)
        for _ in range(20):  # the fetch worker commits within its commit interval
            status = await gather_status(settings, edge.url, "http://127.0.0.1:1")
            lag = {topic.role: topic.lag for topic in status.topics}
            if lag["fetch requests"] == 0:
                break
            await asyncio.sleep(0.5)
        assert lag["fetch requests"] == 0, lag
    finally:
        stop_process(edge.process)
        stop_process(folder.process)
        stop_process(fetcher.process)

"""A provider onboarded by a mapping file alone: a Standard Webhooks sender (signed with the
specification's reference library) through the real edge and worker to a verified download."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from streamproc.local.processes import stop_process

from helpers import (
    REPO,
    s3_client,
    start_edge,
    start_worker,
    wait_for_messages,
    worker_env,
)

pytestmark = pytest.mark.integration
MAPPING = REPO / "deploy" / "standard-webhooks" / "example.toml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def acme(kind: str, recording: str, at: int) -> bytes:
    data = {"recording": {"id": recording, "s3_key": f"acme/{recording}.mp4"}, "room": "r"}
    return orjson.dumps({"type": kind, "timestamp": at, "data": data})


def sender_headers(body: bytes, message_id: str, at: int, secret: str = SECRET) -> dict:
    """What a Standard Webhooks sender adds, computed by the reference library."""
    signature = Webhook(secret).sign(
        msg_id=message_id, timestamp=datetime.fromtimestamp(at, tz=UTC), data=body.decode()
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(at),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def test_a_mapped_provider_is_verified_folded_and_downloaded(broker, s3_endpoint, tmp_path):
    prefix = f"acme-{uuid.uuid4().hex[:6]}"
    mapped = {
        "STREAMPROC_STANDARD_WEBHOOKS_MAPPING": str(MAPPING),
        "STREAMPROC_STANDARD_WEBHOOKS_SECRETS": f"acme-key:{SECRET}",
    }
    env = worker_env(broker.bootstrap, s3_endpoint, prefix, tmp_path / "downloads", **mapped)
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    content = b"acme recording " * 1000
    s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key="acme/rec-acme.mp4", Body=content)
    edge = start_edge(
        broker.bootstrap, env["STREAMPROC_RAW_TOPIC"], tmp_path / "edge.log", **mapped
    )
    worker = start_worker(env, tmp_path / "worker.log")
    now = int(time.time())
    started = acme("recording.started", "rec-acme", now - 60)
    ready = acme("recording.ready", "rec-acme", now)
    try:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:

            async def post(body: bytes, headers: dict) -> httpx.Response:
                return await client.post("/webhooks/acme", content=body, headers=headers)

            forged = sender_headers(started, "msg_1", now, secret="whsec_" + "A" * 32)
            stale = sender_headers(started, "msg_1", now - 3600)
            assert (await post(started, forged)).status_code == 401
            assert (response := await post(started, stale)).status_code == 401
            assert response.json()["error"] == "stale_timestamp"
            malformed = acme("recording.started", "", now)
            answer = await post(malformed, sender_headers(malformed, "msg_0", now))
            assert answer.status_code == 400, answer.text
            assert "/data/recording/id" in answer.json()["message"]
            for message_id, body in [("msg_2", ready), ("msg_1", started), ("msg_2", ready)]:
                response = await post(body, sender_headers(body, message_id, now))
                assert response.status_code == 200, response.text

        lifecycle = await wait_for_messages(
            broker.bootstrap,
            env["STREAMPROC_LIFECYCLE_TOPIC"],
            lambda found: any(m["type"] == "recording.completed" for m in found),
        )
        downloads = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) >= 1
        )
    finally:
        stop_process(edge.process)
        stop_process(worker.process)
    assert [(m["provider"], m["recording_id"], m["type"]) for m in lifecycle] == [
        ("acme", "rec-acme", "recording.completed")  # ready came first: it outranks started
    ]
    [download] = downloads
    assert download["sha256"] == hashlib.sha256(content).hexdigest()
    assert await asyncio.to_thread(Path(download["destination"]).read_bytes) == content

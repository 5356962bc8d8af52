"""Signed webhooks POSTed over HTTP to a running edge land verbatim in the raw topic."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import httpx
import orjson
import pytest

from helpers import DAILY_OLD_KEY, example, read_topic, signed

pytestmark = pytest.mark.integration


async def post(edge, provider: str, body: bytes, headers: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        return await client.post(f"/webhooks/{provider}", content=body, headers=headers)


async def records_with(edge, event_id: str, expect: int = 1) -> list:
    records = await read_topic(edge.bootstrap, edge.raw_topic, expect=0, timeout_s=1)
    matching = [r for r in records if dict(r.headers).get("event-id") == event_id.encode()]
    if len(matching) < expect:
        records = await read_topic(edge.bootstrap, edge.raw_topic, expect=len(records) + 1)
        matching = [r for r in records if dict(r.headers).get("event-id") == event_id.encode()]
    return matching


@pytest.mark.parametrize(
    ("provider", "name", "key"),
    [
        ("daily", "recording.started", "08fa0b24-9220-44c5-846c-3f116cf8e738"),
        ("daily", "recording.ready-to-download", "08fa0b24-9220-44c5-846c-3f116cf8e738"),
        ("daily", "recording.ready-to-download.raw-tracks", "5b0a61b6-1c9d-4b0f-9c3e-2f0e7a8d9c11"),
        ("daily", "recording.error", "c3df927c-f738-4471-a2b7-066fa7e95a6b"),
        ("openvidu", "recordingStarted", "room-123--EG_XYZ--XX445"),
        ("openvidu", "recordingUpdated", "room-123--EG_XYZ--XX445"),
        ("openvidu", "recordingEnded", "room-123--EG_XYZ--XX445"),
    ],
)
async def test_signed_event_lands_verbatim_with_key_and_headers(edge, provider, name, key):
    body = example(provider, name)
    response = await post(edge, provider, body, signed(provider, body))
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    [record] = await records_with(edge, event_id)
    assert record.value == body
    assert record.key == key.encode()
    headers = dict(record.headers)
    assert headers["provider"] == provider.encode()
    assert headers["verified-by"] == (b"current" if provider == "daily" else b"apikey")
    assert abs(float(headers["received-at"]) - time.time()) < 60
    if provider == "daily":
        assert event_id == orjson.loads(body)["id"]


async def test_a_body_near_the_limit_lands_beside_many_small_ones(edge):
    """The producer's batch (publisher.BATCH_BYTES, 512 KiB) is smaller than the largest body
    (1 MiB): such a body is still published, while small ones sent with it share batches."""
    started = orjson.loads(example("daily", "recording.started"))

    def body(event_id: str, padding: int) -> bytes:
        return orjson.dumps({**started, "id": event_id, "padding": "x" * padding})

    large = body("large-1", 1024 * 1024 - 1024)
    small = [body(f"small-{n}", 0) for n in range(100)]
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post("/webhooks/daily", content=b, headers=signed("daily", b))
                for b in [*small[:50], large, *small[50:]]
            )
        )
    assert [r.status_code for r in responses] == [200] * 101, [r.text for r in responses][:3]
    [record] = await records_with(edge, "large-1")
    assert record.value == large
    for event_id in ("small-0", "small-99"):
        assert len(await records_with(edge, event_id)) == 1


async def test_rotated_secret_and_millisecond_timestamp_are_accepted(edge):
    body = orjson.dumps({**orjson.loads(example("daily", "recording.started")), "id": "rotated-1"})
    headers = signed("daily", body, key=DAILY_OLD_KEY, ts=str(int(time.time() * 1000)))
    response = await post(edge, "daily", body, headers)
    assert response.status_code == 200, response.text
    [record] = await records_with(edge, "rotated-1")
    assert dict(record.headers)["verified-by"] == b"previous"


async def test_whitespace_and_key_order_are_kept_byte_for_byte(edge):
    body = (
        b'{ "event_ts":1692124183, "payload" : {"recording_id":"spaced"},\n "id":"ws-1",'
        b' "type":"recording.started", "version":"1.0.0" }'
    )
    response = await post(edge, "daily", body, signed("daily", body))
    assert response.status_code == 200, response.text
    [record] = await records_with(edge, "ws-1")
    assert record.value == body


async def test_redelivery_within_the_window_gets_200_without_a_second_write(edge):
    body = orjson.dumps({**orjson.loads(example("daily", "recording.started")), "id": "dup-1"})
    for _ in range(3):
        response = await post(edge, "daily", body, signed("daily", body))
        assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert len(await records_with(edge, "dup-1")) == 1


@pytest.mark.parametrize(
    ("provider", "name", "signed_request"),
    [("daily", "verification", False), ("openvidu", "testEvent", True)],
)
async def test_provider_verification_requests_get_200_and_are_not_published(
    edge, provider, name, signed_request
):
    body = example(provider, name)
    headers = signed(provider, body) if signed_request else {"content-type": "application/json"}
    before = await read_topic(edge.bootstrap, edge.raw_topic, timeout_s=1)
    response = await post(edge, provider, body, headers)
    assert response.status_code == 200
    assert response.json() == {"status": "verified"}
    after = await read_topic(edge.bootstrap, edge.raw_topic, timeout_s=1)
    assert body not in [r.value for r in after]
    assert len(after) == len(before)


def _error_cases():
    body = example("daily", "recording.started")
    good = signed("daily", body)
    stale = signed("daily", body, ts=str(int(time.time()) - 3600))
    no_signature = {k: v for k, v in good.items() if k != "x-webhook-signature"}
    wrong_key = signed("daily", body, key=b"not-the-key")
    schema_body = b'{"version":"1","type":"recording.started","id":"s","payload":{},"event_ts":1}'
    garbage = b"{this is not json"
    return [
        ("missing signature", "daily", body, no_signature, 401, "missing_signature"),
        ("bad signature", "daily", body, wrong_key, 401, "bad_signature"),
        ("stale timestamp", "daily", body, stale, 401, "stale_timestamp"),
        ("tampered body", "daily", body + b" ", good, 401, "bad_signature"),
        ("malformed json", "daily", garbage, signed("daily", garbage), 400, "malformed_json"),
        ("schema", "daily", schema_body, signed("daily", schema_body), 400, "schema_violation"),
        (
            "content type",
            "daily",
            body,
            {**good, "content-type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        ("unknown provider", "zoom", body, good, 404, "unknown_provider"),
        ("too large", "daily", b"x" * (1024 * 1024 + 1), good, 413, "body_too_large"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _error_cases()])
async def test_client_mistakes_get_4xx_json_with_a_stable_code(edge, case):
    # Signed now, not at collection: a long suite would make every timestamp stale.
    [(_, provider, body, headers, status, code)] = [c for c in _error_cases() if c[0] == case]
    response = await post(edge, provider, body, headers)
    assert response.status_code == status
    payload = response.json()
    assert payload["error"] == code
    assert payload["message"]
    assert "Traceback" not in response.text


async def test_schema_violation_names_what_failed(edge):
    body = b'{"version":"1","type":"recording.started","id":"s","payload":{},"event_ts":1}'
    response = await post(edge, "daily", body, signed("daily", body))
    assert "payload: 'recording_id' is a required property" in response.json()["message"]


async def test_stale_timestamp_message_says_how_old(edge):
    body = example("openvidu", "recordingStarted")
    response = await post(edge, "openvidu", body, signed("openvidu", body, ts="1000"))
    assert response.status_code == 401
    assert "the tolerance is 300 s" in response.json()["message"]


async def test_chunked_body_over_the_limit_is_refused_without_content_length(edge):
    async def chunks():
        for _ in range(17):
            yield b"x" * 65536

    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        response = await client.post(
            "/webhooks/daily", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


async def test_wrong_method_is_405_with_allow_header(edge):
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        response = await client.get("/webhooks/daily")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["error"] == "method_not_allowed"
        assert (await client.post("/healthz")).status_code == 405
        assert (await client.get("/nowhere")).status_code == 404


async def test_health_readiness_and_metrics(edge):
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        assert (await client.get("/readyz")).status_code == 200
        body = example("openvidu", "recordingUpdated")
        await client.post("/webhooks/openvidu", content=body, headers=signed("openvidu", body))
        metrics = (await client.get("/metrics")).text
    assert 'streamproc_edge_requests_total{outcome="published",provider="openvidu"}' in metrics
    assert "streamproc_edge_publish_seconds_bucket" in metrics


@pytest.mark.parametrize("mib", [2, 10])
@pytest.mark.parametrize("client", ["urllib", "httpx", "curl"])
def test_an_oversized_body_gets_413_json_whatever_the_client(edge, client, mib):
    """A 2 or 10 MiB signed POST: the edge reads and drops the rest of the body before answering
    (a lingering close), so a client that writes everything before it reads (urllib) gets
    the 413 too, not a connection reset."""
    body = b'{"pad": "' + b"x" * (mib * 1024 * 1024) + b'"}'
    headers = {**signed("daily", body), "content-type": "application/json"}
    url = f"{edge.url}/webhooks/daily"
    if client == "urllib":
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        status, answer = refused.value.code, refused.value.read()
    elif client == "httpx":
        response = httpx.post(url, content=body, headers=headers, timeout=30)
        status, answer = response.status_code, response.content
    else:
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        command = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--data-binary", "@-", url]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        done = subprocess.run(command, input=body, capture_output=True, timeout=30)
        answer, _, code = done.stdout.rpartition(b"\n")
        status = int(code)
    assert status == 413
    assert orjson.loads(answer)["error"] == "body_too_large"

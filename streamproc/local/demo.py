"""``streamproc demo``: a realistic signed webhook stream against a running ``streamproc up``.

Both providers, a few hundred recordings, some delivered out of order, some twice, one that
fails and one raw-tracks recording; the demo puts their files in the embedded bucket first,
then waits for the worker and reports what appeared on each derived topic.
"""

from __future__ import annotations

import asyncio
import base64
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from streamproc.kafka.metadata import topic_partitions
from streamproc.kafka.reading import read_to_end
from streamproc.local.s3 import local_client
from streamproc.ops.progress import progress_bar
from streamproc.providers import PROVIDERS

STACK_FILE = Path(".streamproc/up.json")
"""Written by ``streamproc up``: URLs, topics and the development secrets it generated."""


@dataclass(frozen=True, slots=True)
class Delivery:
    provider: str
    body: bytes


def _daily(kind: str, index: int, recording: str | None, at: int, **payload: Any) -> Delivery:
    """A Daily event; ``recording`` None for one that names only its instance, as Daily's
    ``recording.error`` does (the worker joins it to the recording through the instance)."""
    ids = {"instance_id": f"demo-instance-{index:04d}"}
    if recording is not None:
        ids["recording_id"] = recording
    document = {
        "version": "1.0.0",
        "type": kind,
        "id": f"demo-{kind}-{index}",
        "payload": {**ids, "room_name": f"demo-room-{index % 7}", **payload},
        "event_ts": at,
    }
    return Delivery("daily", orjson.dumps(document))


def _openvidu(event: str, recording: str, status: str, at_ms: int) -> Delivery:
    document = {
        "creationDate": at_ms,
        "event": event,
        "data": {
            "recordingId": recording,
            "roomId": "demo-ov-room",
            "status": status,
            "filename": f"{recording}.mp4",
            "startDate": at_ms,
        },
    }
    return Delivery("openvidu", orjson.dumps(document))


def demo_stream(recordings: int, seed: int = 7) -> tuple[list[Delivery], dict[str, bytes]]:
    """The deliveries in sending order, and the S3 objects (key -> bytes) they refer to."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible demo, not security
    now = int(time.time())
    histories: list[list[Delivery]] = []
    objects: dict[str, bytes] = {}
    for index in range(recordings):
        if index % 5 < 3:
            recording = f"demo-daily-{index:04d}"
            key = f"demo/{recording}.mp4"
            started = _daily("recording.started", index, recording, now, start_ts=now)
            if index == 1:  # the failing one
                histories.append(
                    [
                        started,
                        _daily(
                            "recording.error",
                            index,
                            None,
                            now + 5,
                            error_msg="demo: the recorder crashed",
                        ),
                    ]
                )
                continue
            if index == 2:  # the raw-tracks one
                tracks = [
                    {
                        "id": f"t{n}",
                        "s3Key": f"demo/{recording}-track{n}.webm",
                        "size": 2048 + n,
                        "type": kind,
                    }
                    for n, kind in enumerate(["video", "audio"])
                ]
                for track in tracks:
                    objects[track["s3Key"]] = bytes([index % 256]) * track["size"]
                details = {"type": "raw-tracks", "s3_key": f"demo/{recording}", "tracks": tracks}
            else:
                objects[key] = f"daily recording {index}\n".encode() * 100
                details = {"type": "cloud", "s3_key": key, "max_participants": 2}
            ready = _daily(
                "recording.ready-to-download",
                index,
                recording,
                now + 60,
                status="finished",
                duration=60,
                start_ts=now,
                **details,
            )
            histories.append([started, ready])
        else:
            recording = f"demo-ov-{index:04d}"
            objects[f"demo-ov-room/{recording}.mp4"] = f"openvidu {index}\n".encode() * 100
            base_ms = now * 1000
            histories.append(
                [
                    _openvidu("recordingStarted", recording, "STARTING", base_ms),
                    _openvidu("recordingUpdated", recording, "ACTIVE", base_ms + 2000),
                    _openvidu("recordingEnded", recording, "COMPLETE", base_ms + 60_000),
                ]
            )
    deliveries: list[Delivery] = []
    for history in histories:
        if rng.random() < 0.15:
            history = list(reversed(history))  # out of order
        if rng.random() < 0.1:
            history = [*history, rng.choice(history)]  # delivered twice
        deliveries.extend(history)
    return deliveries, objects


def _key_for(provider: str, secret: str) -> bytes:
    key_text = secret.split(",")[0].rpartition(":")[2]
    return base64.b64decode(key_text) if provider == "daily" else key_text.encode()


async def _send_all(edge_url: str, secrets: dict[str, str], deliveries: list[Delivery]) -> Counter:
    outcomes: Counter[str] = Counter()
    limit = asyncio.Semaphore(16)
    bar = progress_bar(len(deliveries), "sending webhooks", unit="req")
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:

        async def send(delivery: Delivery) -> None:
            scheme = PROVIDERS[delivery.provider].scheme
            key = _key_for(delivery.provider, secrets[delivery.provider])
            headers = scheme.signed_headers(key, delivery.body, str(int(time.time())))
            async with limit:
                response = await client.post(
                    f"/webhooks/{delivery.provider}", content=delivery.body, headers=headers
                )
            outcomes[f"{response.status_code} {response.json().get('status', '')}".strip()] += 1
            bar.update(1)

        for start in range(0, len(deliveries), 64):  # keep each recording's order mostly
            await asyncio.gather(*(send(d) for d in deliveries[start : start + 64]))
    bar.close()
    return outcomes


async def _read_all(bootstrap: str, topic: str) -> list[dict]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        return [orjson.loads(record.value) async for record in read_to_end(consumer, tps)]
    finally:
        await consumer.stop()


async def run_demo(stack: dict[str, Any], recordings: int, wait_s: float) -> int:
    deliveries, objects = demo_stream(recordings)
    s3 = local_client(stack["s3_endpoint"])
    for key, data in objects.items():
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=data)
    print(f"put {len(objects)} demo recordings in s3://{stack['bucket']}", flush=True)
    outcomes = await _send_all(stack["edge_url"], stack["secrets"], deliveries)
    print(
        f"sent {len(deliveries)} signed webhooks: "
        + ", ".join(f"{n} x {k}" for k, n in sorted(outcomes.items())),
        flush=True,
    )
    topics = stack["topics"]
    deadline = time.monotonic() + wait_s
    bar = progress_bar(len(objects), "files downloaded by the worker", unit="file")
    while True:
        downloads = await _read_all(stack["kafka_bootstrap"], topics["downloads"])
        bar.update(len({m["event_id"] for m in downloads}) - bar.n)
        if bar.n >= len(objects) or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    bar.close()
    return _report(stack, await _gather(stack), len(objects))


async def _gather(stack: dict[str, Any]) -> dict[str, list[dict]]:
    return {
        name: await _read_all(stack["kafka_bootstrap"], topic)
        for name, topic in stack["topics"].items()
    }


def _report(stack: dict[str, Any], found: dict[str, list[dict]], expected_files: int) -> int:
    latest = {m["recording_id"]: m for m in found["state"]}
    statuses = Counter(m["status"] for m in latest.values())
    transitions = Counter(
        m["type"] for m in {m["event_id"]: m for m in found["lifecycle"]}.values()
    )
    files = {m["event_id"]: m for m in found["downloads"]}.values()
    print("\n== demo report ==")
    print(
        f"{stack['topics']['state']}: {len(latest)} recordings; "
        + ", ".join(f"{s}={n}" for s, n in sorted(statuses.items()))
    )
    print(
        f"{stack['topics']['lifecycle']}: "
        + ", ".join(f"{t}={n}" for t, n in sorted(transitions.items()))
    )
    print(
        f"{stack['topics']['downloads']}: {len(files)} files, "
        f"{sum(m['size'] for m in files)} bytes, each sha256-verified"
    )
    for message in sorted(files, key=lambda m: m["destination"])[:5]:
        print(f"  {message['destination']}  ({message['size']} bytes)")
    print(f"{stack['topics']['dlq']}: {len(found['dlq'])} dead letters")
    return 0 if len(files) >= expected_files else 1


def main(recordings: int, wait_s: float) -> int:
    if not STACK_FILE.is_file():
        print(
            f"streamproc: no {STACK_FILE}; start `streamproc up` in this directory first",
            file=sys.stderr,
        )
        return 2
    stack = orjson.loads(STACK_FILE.read_bytes())
    return asyncio.run(run_demo(stack, recordings, wait_s))

"""``streamproc dlq``: a download that failed past its retry is listed, shown, and sent back
once it can succeed; sent back twice it is sent once; a still-broken event is dead-lettered
again as attempt 2; a replay afterwards derives the same states."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamproc.local.processes import stop_process
from streamproc.replay.run import ReplayRange, current_statuses, replay, status_changes
from streamproc.settings import Settings

from helpers import s3_client, start_worker, wait_for_messages, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers, pytest.mark.long_on_tansu]
T = 1_700_000_000


def daily(kind: str, event_id: str, **payload: object) -> bytes:
    document = {"version": "1.0.0", "type": kind, "id": event_id, "event_ts": T}
    return orjson.dumps(document | {"payload": {"room_name": "dlq-room", **payload}})


def dlq(env: dict[str, str], cwd: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``streamproc dlq ...`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "streamproc", "dlq", *arguments],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def answer(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


async def test_a_dead_letter_is_listed_shown_and_redriven_once(broker, s3_endpoint, tmp_path):
    prefix = f"dlq-{uuid.uuid4().hex[:6]}"
    # One retry a second later, then the dead-letter topic: S3 "away" for longer than that.
    env = worker_env(
        broker.bootstrap,
        s3_endpoint,
        prefix,
        tmp_path / "downloads",
        STREAMPROC_FETCH_RETRY_DELAYS_S="1",
    )
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    worker = start_worker(env, tmp_path / "worker.log")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        raw, daily_header = env["STREAMPROC_RAW_TOPIC"], [("provider", b"daily")]
        started = daily("recording.started", "sta-late", recording_id="rec-late")
        ready = daily(
            "recording.ready-to-download",
            "rtd-late",
            recording_id="rec-late",
            s3_key="late.mp4",
            status="finished",
        )
        for body in (started, ready):
            await producer.send_and_wait(raw, body, key=b"rec-late", headers=daily_header)
        unknown = [("provider", b"acme"), ("event-id", b"acme-1")]
        await producer.send_and_wait(raw, b'{"id": "acme-1"}', key=b"acme", headers=unknown)
        await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DLQ_TOPIC"], lambda found: len(found) >= 2
        )

        listed = answer(dlq(env, tmp_path, "list", "--json"))
        groups = {(group["stage"], group["count"]) for group in listed["groups"]}
        assert (listed["total"], groups) == (2, {("fetch", 1), ("decode", 1)})
        [fetch_group] = [group for group in listed["groups"] if group["stage"] == "fetch"]
        assert "404" in fetch_group["reason"] or "not found" in fetch_group["reason"].lower()
        [fetch_ref] = fetch_group["examples"]
        shown = answer(dlq(env, tmp_path, "show", fetch_ref, "--json"))
        assert (shown["recording_id"], shown["attempt"], shown["redriven"]) == ("rec-late", 2, None)
        assert "after 2 attempts" in shown["reason"]
        text = dlq(env, tmp_path, "show", fetch_ref)
        assert "rec-late" in text.stdout and "redriven:  no" in text.stdout

        # The object appears; the operator sends the fetch back, twice.
        s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key="late.mp4", Body=b"late bytes")
        first = answer(dlq(env, tmp_path, "redrive", "--stage", "fetch", "--json"))
        assert [(s["ref"], s["attempt"]) for s in first["sent"]] == [(fetch_ref, 3)]
        assert first["sent"][0]["topic"] == env["STREAMPROC_FETCH_TOPIC"]
        again = answer(dlq(env, tmp_path, "redrive", fetch_ref, "--json"))
        assert (again["sent"], len(again["already_redriven"])) == ([], 1)
        downloads = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) >= 1
        )
        assert [m["recording_id"] for m in downloads] == ["rec-late"]
        stored = await asyncio.to_thread(Path(downloads[0]["destination"]).read_bytes)
        assert stored == b"late bytes"

        # Still broken: sent back, it is dead-lettered again as attempt 2, and nothing loops.
        decode = answer(dlq(env, tmp_path, "redrive", "--stage", "decode", "--json"))
        assert len(decode["sent"]) == 1 and decode["sent"][0]["topic"] == raw
        dead = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DLQ_TOPIC"], lambda found: len(found) >= 3
        )
        assert sorted((m["stage"], m["attempt"]) for m in dead) == [
            ("decode", 1),
            ("decode", 2),
            ("fetch", 2),
        ]
        [second] = [m for m in dead if (m["stage"], m["attempt"]) == ("decode", 2)]
        assert second["headers"]["streamproc-redriven-from"]
        listed = answer(dlq(env, tmp_path, "list", "--stage", "decode", "--json"))
        assert listed["selected"] == 2

        refused = dlq(env, tmp_path, "redrive")
        assert refused.returncode == 2 and "--all" in refused.stderr
        downloads = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) > 1, 3
        )
        assert len(downloads) == 1  # fetched once
    finally:
        await producer.stop()
        stop_process(worker.process)
    # The resends are in the raw log like any event: a replay derives the same states.
    settings = Settings.from_env(env)
    result = await replay(settings, ReplayRange(), dry_run=True, progress=False)
    try:
        assert status_changes(await current_statuses(settings), result.states) == []
        assert result.states["rec-late"].status == "finished"
    finally:
        result.close()

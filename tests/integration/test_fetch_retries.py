"""Downloads that fail in a way that may heal are tried again after a wait, without holding
up the fetch topic, through worker kills; after the last wait they are dead-lettered with
every attempt's reason."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from streamproc.local.processes import stop_process

from helpers import (
    finished,
    read_topic,
    s3_client,
    send,
    start_worker,
    wait_for_messages,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


def setup(broker, s3_endpoint: str, tmp_path: Path, delays: str):
    prefix = f"retry-{uuid.uuid4().hex[:6]}"
    env = worker_env(
        broker.bootstrap,
        s3_endpoint,
        prefix,
        tmp_path / "downloads",
        STREAMPROC_FETCH_RETRY_DELAYS_S=delays,
        STREAMPROC_FETCH_ATTEMPTS="1",
    )
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    return env, s3


async def test_an_object_that_appears_late_is_downloaded_by_a_retry(broker, s3_endpoint, tmp_path):
    env, s3 = setup(broker, s3_endpoint, tmp_path, "2,2")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        raw = env["STREAMPROC_RAW_TOPIC"]
        await send(broker.bootstrap, raw, "rec-late", finished("rec-late", "late.mp4"))
        await send(broker.bootstrap, raw, "rec-never", finished("rec-never", "never.mp4"))
        first_wait = f"{env['STREAMPROC_APP_ID']}-fetch-retry-1"
        waiting = await read_topic(broker.bootstrap, first_wait, expect=2, timeout_s=60)
        assert sorted(record.key for record in waiting) == [b"rec-late", b"rec-never"]
        s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key="late.mp4", Body=b"late")
        downloads = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) >= 1
        )
        dead = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DLQ_TOPIC"], lambda found: len(found) >= 1
        )
    finally:
        stop_process(worker.process)
    assert [m["recording_id"] for m in downloads] == ["rec-late"]
    stored = await asyncio.to_thread(Path(downloads[0]["destination"]).read_bytes)
    assert stored == b"late"
    [letter] = dead
    assert (letter["recording_id"], letter["stage"], letter["attempt"]) == ("rec-never", "fetch", 3)
    assert "after 3 attempts: attempt 1:" in letter["reason"]


@pytest.mark.long_on_tansu
async def test_a_retry_waiting_through_a_worker_kill_is_downloaded_once(
    broker, s3_endpoint, tmp_path
):
    env, s3 = setup(broker, s3_endpoint, tmp_path, "8")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        raw = env["STREAMPROC_RAW_TOPIC"]
        await send(broker.bootstrap, raw, "rec-kill", finished("rec-kill", "kill.mp4"))
        waiting = f"{env['STREAMPROC_APP_ID']}-fetch-retry-1"
        assert await read_topic(broker.bootstrap, waiting, expect=1, timeout_s=60)
        worker.process.kill()  # while the request waits
        worker.process.wait()
        s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key="kill.mp4", Body=b"kill")
        worker = start_worker(env, tmp_path / "worker.log")
        downloads = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) >= 1
        )
        more = await wait_for_messages(
            broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], lambda found: len(found) > 1, 5
        )
    finally:
        stop_process(worker.process)
    # The request the kill interrupted may be handled again (its offset was not committed)
    # besides its retry: the fetcher finds the stored file, and the message has the same id.
    assert {(m["recording_id"], m["event_id"]) for m in more} == {
        (downloads[0]["recording_id"], downloads[0]["event_id"])
    }
    assert downloads[0]["recording_id"] == "rec-kill"
    assert await read_topic(broker.bootstrap, env["STREAMPROC_DLQ_TOPIC"]) == []

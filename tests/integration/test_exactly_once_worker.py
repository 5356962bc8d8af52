"""The worker with ``STREAMPROC_PROCESSING_GUARANTEE=exactly_once`` on Apache Kafka, killed
in the middle: a ``read_committed`` reader of each derived topic, with no de-duplication,
reads each message once, and every finished recording is reported downloaded once. (The
chaos suite's ``exactly-once`` modes do the same under every fault at once.)"""

from __future__ import annotations

import uuid

import pytest

from streamproc.local.processes import stop_process

from helpers import (
    finished,
    messages,
    read_topic,
    repeated_messages,
    s3_client,
    send,
    start_worker,
    wait_for_messages,
    worker_env,
)

pytestmark = pytest.mark.integration
RECORDINGS = 30


async def test_each_derived_message_is_read_once_through_a_worker_kill(
    kafka, s3_endpoint, tmp_path
):
    prefix = f"eos-{uuid.uuid4().hex[:6]}"
    env = worker_env(
        kafka.bootstrap,
        s3_endpoint,
        prefix,
        tmp_path / "downloads",
        STREAMPROC_PROCESSING_GUARANTEE="exactly_once",
    )
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    raw, downloads_topic = env["STREAMPROC_RAW_TOPIC"], env["STREAMPROC_DOWNLOADS_TOPIC"]

    def recording(index: int) -> str:
        return f"rec-{index:03d}"

    async def send_recordings(indexes: range) -> None:
        for index in indexes:
            key = f"files/{recording(index)}.mp4"
            s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key=key, Body=b"%d" % index)
            await send(kafka.bootstrap, raw, recording(index), finished(recording(index), key))

    def committed_downloads(enough: int):
        return wait_for_messages(
            kafka.bootstrap,
            downloads_topic,
            lambda found: len(found) >= enough,
            isolation_level="read_committed",
        )

    worker = start_worker(env, tmp_path / "worker.log")
    try:
        await send_recordings(range(RECORDINGS // 2))
        assert await committed_downloads(1), (tmp_path / "worker.log").read_text()[-3000:]
        worker.process.kill()  # somewhere in the first half
        worker.process.wait()
        worker = start_worker(env, tmp_path / "worker.log")
        await send_recordings(range(RECORDINGS // 2, RECORDINGS))
        await committed_downloads(RECORDINGS)
    finally:
        stop_process(worker.process)
    committed = {
        name: await read_topic(
            kafka.bootstrap, env[f"STREAMPROC_{name}_TOPIC"], isolation_level="read_committed"
        )
        for name in ("STATE", "LIFECYCLE", "DOWNLOADS")
    }
    assert repeated_messages(committed) == {"STATE": [], "LIFECYCLE": [], "DOWNLOADS": []}
    reported = {m["recording_id"] for m in messages(committed["DOWNLOADS"])}
    assert reported == {recording(index) for index in range(RECORDINGS)}
    assert await read_topic(kafka.bootstrap, env["STREAMPROC_DLQ_TOPIC"]) == []

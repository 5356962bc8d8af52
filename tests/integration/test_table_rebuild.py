"""Rebuilding the table: a worker group under a new app id folds the whole log again, writes
the same ids, downloads nothing twice, and `streamproc lag` says when to switch over."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from test_worker_restart import lifecycle, produce

from streamproc.local.processes import stop_process
from streamproc.replay.run import group_lag
from streamproc.settings import Settings

from helpers import lag_report, messages, read_topic, s3_client, start_worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]
RECORDINGS = 20


async def _until(predicate, timeout_s: float = 120) -> bool:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True


async def test_a_new_table_version_catches_up_with_the_same_ids(broker, s3_proxy, tmp_path):
    prefix = f"rebuild-{uuid.uuid4().hex[:6]}"
    env = worker_env(broker.bootstrap, s3_proxy.url, prefix, tmp_path / "downloads")
    bucket = env["STREAMPROC_S3_BUCKET"]
    s3 = s3_client(s3_proxy.upstream)
    s3.create_bucket(Bucket=bucket)
    for index in range(RECORDINGS):
        s3.put_object(Bucket=bucket, Key=f"files/rec-{index:04d}.mp4", Body=b"x" * 100)
    topics = {n: env[f"STREAMPROC_{n}_TOPIC"] for n in ("RAW", "LIFECYCLE", "DOWNLOADS")}
    settings = Settings(kafka_bootstrap=broker.bootstrap, raw_topic=topics["RAW"])

    async def downloaded() -> bool:
        found = messages(await read_topic(broker.bootstrap, topics["DOWNLOADS"], timeout_s=0.5))
        return len({m["event_id"] for m in found}) == RECORDINGS

    v1 = start_worker(env, tmp_path / "v1.log")
    try:
        await produce(broker.bootstrap, topics["RAW"], lifecycle(range(RECORDINGS)))
        assert await _until(downloaded)
        first = messages(await read_topic(broker.bootstrap, topics["LIFECYCLE"]))

        v2_id = env["STREAMPROC_APP_ID"] + "-v2"
        v2 = start_worker({**env, "STREAMPROC_APP_ID": v2_id}, tmp_path / "v2.log")
        try:

            async def caught_up() -> bool:
                lag = await group_lag(settings, v2_id)
                return sum(end - committed for committed, end in lag.values()) == 0

            assert await _until(caught_up), "the new table version never caught up"
            report = await lag_report(broker.bootstrap, topics["RAW"], v2_id)
            assert "total lag: 0" in report, report
        finally:
            stop_process(v2.process)
    finally:
        stop_process(v1.process)

    both = messages(await read_topic(broker.bootstrap, topics["LIFECYCLE"]))
    assert len(both) == 2 * len(first), "the new version did not re-emit the lifecycle"
    assert {m["event_id"] for m in both} == {m["event_id"] for m in first}
    for index in range(RECORDINGS):
        assert s3_proxy.gets[f"/{bucket}/files/rec-{index:04d}.mp4"] == 1

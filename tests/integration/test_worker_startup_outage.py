"""A broker that goes away while the worker starts: its first assignment still has every table.

docs/notes/durability.md section 10. Faust used to create its own topics (the tables' changelogs,
the assignor's leader topic) after its consumer had read the cluster's metadata; the consumer's
refresh after the subscription failed while the broker was away, and the first assignment
after it came back ran on the old view: "Ignoring missing topic" for the changelogs, 16 of 25
partitions, and the first table write raised PartitionsMismatch (two events dead-lettered in
the chaos suite's durable run). The worker now creates those topics before Faust starts.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from test_worker_restart import lifecycle, produce, wait_until

from streamproc.local.processes import stop_process

from helpers import messages, read_topic, s3_client, start_worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]
RECORDINGS = 20
FAUST_STARTING = "[^Worker]: Starting"
"""Logged (at DEBUG) once the worker's own topics exist and Faust begins to start."""


async def test_a_broker_restart_as_the_worker_starts_leaves_no_table_unassigned(
    restartable_broker, s3_endpoint, tmp_path
):
    prefix = f"outage-{uuid.uuid4().hex[:6]}"
    broker = restartable_broker
    env = worker_env(
        broker.bootstrap,
        s3_endpoint,
        prefix,
        tmp_path / "downloads",
        STREAMPROC_LOG_LEVEL="DEBUG",
    )
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    for index in range(RECORDINGS):
        key = f"files/rec-{index:04d}.mp4"
        s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key=key, Body=b"v" * 100)
    log_path = tmp_path / "worker.log"
    worker = start_worker(env, log_path)
    try:

        async def faust_starting() -> bool:
            return FAUST_STARTING in log_path.read_text(errors="replace")

        assert await wait_until(faust_starting, 60), "the worker never started Faust"
        await asyncio.sleep(0.2)  # Faust's consumer has read the cluster's metadata
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(2)
        broker.start()
        if worker.process.poll() is not None:  # gave up on the broker: a supervisor restarts it
            worker = start_worker(env, log_path)
        await produce(broker.bootstrap, env["STREAMPROC_RAW_TOPIC"], lifecycle(range(RECORDINGS)))

        async def all_folded() -> bool:
            records = await read_topic(broker.bootstrap, env["STREAMPROC_STATE_TOPIC"], 0, 0.5)
            latest = {m["recording_id"]: m for m in messages(records)}
            return len(latest) == RECORDINGS and all(
                m["events_applied"] == 2 for m in latest.values()
            )

        assert await wait_until(all_folded, 120), "not every recording was folded"
    finally:
        stop_process(worker.process)
    log = log_path.read_text(errors="replace")
    assert "Ignoring missing topic" not in log, "an assignment left a table's changelog out"
    assert "PartitionsMismatch" not in log
    assert await read_topic(broker.bootstrap, env["STREAMPROC_DLQ_TOPIC"], 0, 1) == []

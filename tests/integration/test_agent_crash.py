"""An agent that crashes stops its worker at once; the next worker loses nothing.

docs/notes/durability.md section 11. Faust restarts a crashed agent in the same process, but the
batch it held is acked (``take_events`` acks in a ``finally``) and committed although its table
writes were never flushed, and the records the dead stream had taken are not read again until
a rebalance: the worker stayed up and folded nothing more. Correction 8 of ``worker/engine.py``
ends the process instead; the fault is injected by ``tests/faults/sitecustomize.py``.
"""

from __future__ import annotations

import uuid

import pytest
from test_worker_restart import daily_event, lifecycle, produce, wait_until

from streamproc.local.processes import stop_process
from streamproc.worker.engine import EXIT_AGENT_CRASHED

from helpers import REPO, messages, read_topic, s3_client, start_worker, worker_env

pytestmark = pytest.mark.integration
RECORDINGS = 12
CRASHING = "rec-0007"


async def test_a_crashed_agent_ends_its_worker_and_the_next_one_folds_everything(
    broker, s3_proxy, tmp_path
):
    prefix = f"crash-{uuid.uuid4().hex[:6]}"
    env = worker_env(broker.bootstrap, s3_proxy.url, prefix, tmp_path / "downloads")
    s3 = s3_client(s3_proxy.upstream)
    s3.create_bucket(Bucket=env["STREAMPROC_S3_BUCKET"])
    for index in range(RECORDINGS):
        key = f"files/rec-{index:04d}.mp4"
        s3.put_object(Bucket=env["STREAMPROC_S3_BUCKET"], Key=key, Body=b"v" * 100)
    faulty = {
        **env,
        "PYTHONPATH": str(REPO / "tests" / "faults"),
        "STREAMPROC_TEST_CRASH_KEY": CRASHING,
    }
    first = start_worker(faulty, tmp_path / "worker-1.log")
    try:
        await produce(broker.bootstrap, env["STREAMPROC_RAW_TOPIC"], lifecycle(range(RECORDINGS)))

        async def exited() -> bool:
            return first.process.poll() is not None

        await wait_until(exited, 90)
        assert first.process.poll() == EXIT_AGENT_CRASHED, "the worker outlived its fold agent"
    finally:
        stop_process(first.process)
    assert "injected fault" in (tmp_path / "worker-1.log").read_text()

    second = start_worker(env, tmp_path / "worker-2.log")
    try:

        def folded(applied: int):
            async def predicate() -> bool:
                records = await read_topic(broker.bootstrap, env["STREAMPROC_STATE_TOPIC"], 0, 0.5)
                latest = {m["recording_id"]: m for m in messages(records)}
                return len(latest) == RECORDINGS and all(
                    m["events_applied"] == applied for m in latest.values()
                )

            return predicate

        assert await wait_until(folded(2), 120), "a recording's events were lost in the crash"
        # The state topic shows what was sent; the table must hold it too: a third event for
        # each recording folds onto what the table kept (a lost write would start over).
        late = [(index, daily_event("recording.error", index, 1020)) for index in range(RECORDINGS)]
        await produce(broker.bootstrap, env["STREAMPROC_RAW_TOPIC"], late)
        assert await wait_until(folded(3), 120), "the table lost writes of the crashed batch"

        async def all_downloaded() -> bool:
            records = await read_topic(broker.bootstrap, env["STREAMPROC_DOWNLOADS_TOPIC"], 0, 0.5)
            return len({m["recording_id"] for m in messages(records)}) == RECORDINGS

        assert await wait_until(all_downloaded, 120), "not every recording was downloaded"
    finally:
        stop_process(second.process)
    assert await read_topic(broker.bootstrap, env["STREAMPROC_DLQ_TOPIC"], 0, 1) == []

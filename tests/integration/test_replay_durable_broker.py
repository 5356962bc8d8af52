"""A replay reads the whole log from a broker that keeps its log on slow S3 storage.

Such a broker answers a fetch with nothing when its storage takes longer than the fetch's
wait (``test_broker_facts.py::test_a_short_fetch_wait_reads_nothing_from_s3_storage``). The
replay used to take the first empty answer for the end of a partition and fold a part of the
log without a word: the chaos suite's durable run then saw a "clean fold" with 105 recordings
behind the live worker's states.
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.replay.run import ReplayRange, replay
from streamproc.settings import Settings

from helpers import broker_on_s3

pytestmark = pytest.mark.integration
RECORDINGS = 10


def started(index: int) -> bytes:
    return orjson.dumps(
        {
            "version": "1.0.0",
            "type": "recording.started",
            "id": f"started-{index}",
            "payload": {"recording_id": f"rec-{index}", "start_ts": 1000},
            "event_ts": 1000 + index,
        }
    )


async def test_a_replay_from_slow_storage_folds_every_record(s3_endpoint, tmp_path):
    with broker_on_s3(s3_endpoint, tmp_path, delay_s=0.3) as broker:
        settings = dataclasses.replace(
            Settings(), kafka_bootstrap=broker.bootstrap, raw_topic="slow.raw"
        )
        await ensure_topics(broker.bootstrap, [TopicSpec(settings.raw_topic, 1)])
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for index in range(RECORDINGS):  # one batch each: many storage reads to replay
                await producer.send_and_wait(
                    settings.raw_topic, started(index), headers=[("provider", b"daily")]
                )
        finally:
            await producer.stop()
        result = await replay(settings, ReplayRange(), dry_run=True, progress=False)
        try:
            assert result.counts["records"] == RECORDINGS
            assert len(result.states) == RECORDINGS
        finally:
            result.close()

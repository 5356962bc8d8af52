"""Where the pipeline sends a raw record before any fold: the recording's own partition."""

from __future__ import annotations

import asyncio

import orjson

from streamproc.kafka.partitions import partition_for

from helpers import example, in_memory_pipeline

PARTITIONS = 4


class Topic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, key, value, headers=None) -> None:
        self.sent.append(key)


def test_a_record_keyed_right_but_on_another_partition_goes_round_the_rekeyed_topic():
    """Another producer's partitioner (librdkafka's CRC32) can put a correctly keyed record
    on a partition whose table does not hold its recording."""
    body = example("daily", "recording.started")
    recording = orjson.loads(body)["payload"]["recording_id"].encode()
    home = partition_for(recording, PARTITIONS)
    rekeyed, state = Topic(), Topic()
    flow = in_memory_pipeline(Topic(), PARTITIONS, rekeyed=rekeyed, state=state)
    headers = {"provider": b"daily"}
    asyncio.run(flow.handle_raw("raw", (home + 1) % PARTITIONS, 0, recording, body, headers))
    assert (rekeyed.sent, state.sent) == ([recording], [])
    asyncio.run(flow.handle_raw("raw", home, 1, recording, body, headers))
    assert (rekeyed.sent, state.sent) == ([recording], [recording])

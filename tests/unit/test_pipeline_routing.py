"""Where the pipeline sends a raw record before any fold: the recording's own partition."""

from __future__ import annotations

import asyncio

import orjson

from streamproc.kafka.partitions import partition_for
from streamproc.worker.pipeline import Pipeline

from helpers import example

PARTITIONS = 4


class Topic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, key, value, headers=None) -> None:
        self.sent.append(key)


def pipeline(rekeyed: Topic, state: Topic) -> Pipeline:
    other = Topic()
    return Pipeline(
        table={},
        state=state,
        lifecycle=other,
        fetch_requests=other,
        downloads=other,
        dead_letters=other,
        rekeyed=rekeyed,
        instances=other,
        instance_table={},
        partitions=PARTITIONS,
    )


def test_a_record_keyed_right_but_on_another_partition_goes_round_the_rekeyed_topic():
    """Another producer's partitioner (librdkafka's CRC32) can put a correctly keyed record
    on a partition whose table does not hold its recording."""
    body = example("daily", "recording.started")
    recording = orjson.loads(body)["payload"]["recording_id"].encode()
    home = partition_for(recording, PARTITIONS)
    rekeyed, state = Topic(), Topic()
    flow = pipeline(rekeyed, state)
    headers = {"provider": b"daily"}
    asyncio.run(flow.handle_raw("raw", (home + 1) % PARTITIONS, 0, recording, body, headers))
    assert (rekeyed.sent, state.sent) == ([recording], [])
    asyncio.run(flow.handle_raw("raw", home, 1, recording, body, headers))
    assert (rekeyed.sent, state.sent) == ([recording], [recording])

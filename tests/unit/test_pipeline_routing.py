"""Where the pipeline sends a raw record before any fold: the recording's own partition."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from faust.exceptions import PartitionsMismatch

from streamproc.kafka.partitions import partition_for

from helpers import example, in_memory_pipeline

PARTITIONS = 4


class Topic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, key, value, headers=None, partition=None) -> None:
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


class FailingTable(dict):
    """A table whose writes fail with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def __setitem__(self, key, value) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "dead_lettered"),
    [(ValueError("a state this record cannot make"), True), (PartitionsMismatch("0"), False)],
)
def test_a_fold_error_of_the_record_is_dead_lettered_one_of_the_engine_is_raised(
    error, dead_lettered
):
    """An engine error (docs/notes/durability.md section 10) dead-lettered good events; raised, it
    ends the worker and the record is read again (engine correction 8)."""
    body = example("daily", "recording.started")
    recording = orjson.loads(body)["payload"]["recording_id"].encode()
    dead_letters = Topic()
    flow = in_memory_pipeline(Topic(), PARTITIONS, dead_letters=dead_letters)
    flow.table = FailingTable(error)
    handled = flow.handle_raw(
        "raw", partition_for(recording, PARTITIONS), 0, recording, body, {"provider": b"daily"}
    )
    if dead_lettered:
        asyncio.run(handled)
    else:
        with pytest.raises(type(error)):
            asyncio.run(handled)
    assert dead_letters.sent == ([recording] if dead_lettered else [])

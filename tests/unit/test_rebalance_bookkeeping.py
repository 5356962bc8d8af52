"""Faust's record of acks and commits across a rebalance (engine correction 7), on a
consumer that is never started: the bookkeeping is plain data, the rebalance callbacks are
called in the order aiokafka calls them."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streamproc.worker.engine import App, StreamprocConsumer

TOPIC = "raw"
PARTITION = TP(TOPIC, 0)
FAUST, OURS = faust_aiokafka.Consumer, StreamprocConsumer


class Rebalances:
    """One consumer of ``consumer_class`` and the rebalance steps the tests replay."""

    def __init__(self, consumer_class: type[Any]) -> None:
        self.app = App("bookkeeping", broker="kafka://127.0.0.1:1")
        self.app.topics._acking_topics.add(TOPIC)  # an agent subscribes to it
        self.during_revocation: list[Any] = []
        self.consumer = consumer_class(
            self.app.transport,
            callback=self._nothing,
            on_partitions_revoked=self._revoking,
            on_partitions_assigned=self._nothing,
        )

    async def _nothing(self, *args: Any) -> None:
        pass

    async def _revoking(self, revoked: set[TP]) -> None:
        """Faust's app waits here for the records in flight: they are acked now."""
        for message in self.during_revocation:
            self.consumer.ack(message)

    def message(self, offset: int) -> Any:
        record = ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", b"v", None, 1, 1, ())
        message = self.consumer._to_message(PARTITION, record)
        self.consumer.track_message(message)
        return message

    async def assign(self, generation: int, committed: int) -> None:
        """aiokafka's order: the generation, the assignment, then the seek (in recovery)."""
        self.app.consumer_generation_id = generation
        await self.consumer.on_partitions_assigned({PARTITION}, generation)
        self.consumer._committed_offset[PARTITION] = committed
        self.consumer.sought = {PARTITION: committed}

    async def revoke(self) -> None:
        await self.consumer.on_partitions_revoked({PARTITION})


@pytest.mark.parametrize(("consumer_class", "next_commit"), [(FAUST, 80), (OURS, None)])
async def test_a_record_acked_while_revoking_is_not_committed_by_the_next_generation(
    consumer_class, next_commit
):
    """Faust commits 80 before the new generation delivered 79 (it may be a record the
    stream skipped unhandled); ours waits for the record to be read again."""
    rebalances = Rebalances(consumer_class)
    await rebalances.assign(generation=1, committed=79)
    rebalances.during_revocation.append(rebalances.message(79))
    await rebalances.revoke()
    await rebalances.assign(generation=2, committed=79)

    assert rebalances.consumer._new_offset(PARTITION) == next_commit
    assert not rebalances.consumer.unacked, "revocation's wait for acks would not end"


async def test_an_earlier_generation_ack_is_dropped_and_the_current_one_counts():
    rebalances = Rebalances(OURS)
    await rebalances.assign(generation=1, committed=79)
    old = rebalances.message(79)
    await rebalances.revoke()
    await rebalances.assign(generation=2, committed=79)
    current = rebalances.message(79)

    assert rebalances.consumer.ack(old) is False
    assert old.acked and old not in rebalances.consumer.unacked
    assert rebalances.consumer._new_offset(PARTITION) is None
    assert rebalances.consumer.ack(current) is True
    assert rebalances.consumer._new_offset(PARTITION) == 80


class _Producer:
    async def flush(self) -> None:
        pass


@pytest.mark.parametrize(("consumer_class", "recorded"), [(FAUST, 83), (OURS, 79)])
async def test_a_commit_across_a_rebalance_leaves_the_rebalance_seek(consumer_class, recorded):
    """A commit of 83 begun in generation 1 ends after generation 2 sought 79 (the broker
    refused it): Faust records 83 as committed, ours keeps the seek's 79."""
    rebalances = Rebalances(consumer_class)
    rebalances.app._producer = _Producer()
    await rebalances.assign(generation=1, committed=60)
    consumer = rebalances.consumer
    consumer.assignment = lambda: {PARTITION}

    async def refused_after_a_rebalance(offsets: Any) -> bool:
        await rebalances.revoke()
        await rebalances.assign(generation=2, committed=79)
        return False

    consumer._commit = refused_after_a_rebalance
    await consumer._commit_offsets({PARTITION: 83})

    assert consumer._committed_offset[PARTITION] == recorded


@pytest.mark.parametrize(("consumer_class", "recorded"), [(FAUST, 162), (OURS, 96)])
async def test_a_refused_commit_is_not_recorded_as_committed(consumer_class, recorded):
    """A commit the group refuses (its member was fenced: correction 11) with no rebalance
    begun yet: Faust records it as committed anyway, and the sweeper, comparing with that
    record, took 66 records below it for "committed but never handled" (kafka chaos run at
    DEBUG, 2026-12-04); ours keeps what was really committed."""
    rebalances = Rebalances(consumer_class)
    rebalances.app._producer = _Producer()
    await rebalances.assign(generation=1, committed=96)
    consumer = rebalances.consumer
    consumer.assignment = lambda: {PARTITION}

    async def refused(offsets: Any) -> bool:
        return False

    consumer._commit = refused
    await consumer._commit_offsets({PARTITION: 162})

    assert consumer._committed_offset[PARTITION] == recorded


class _Position:
    def __init__(self, position: int) -> None:
        self.position = position


class _Thread:
    """The consumer thread's aiokafka state as ``getmany`` reads it, and the seeks it gets."""

    def __init__(self, position: int) -> None:
        assignment = type(
            "Assignment", (), {"tps": {PARTITION}, "state_value": lambda _, tp: _Position(position)}
        )()
        subscription = type("Subscription", (), {"assignment": assignment})()
        self._consumer = type(
            "Client", (), {"_subscription": type("S", (), {"subscription": subscription})()}
        )()
        self.seeks: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@pytest.mark.parametrize(("consumer_class", "seeks"), [(FAUST, []), (OURS, [(PARTITION, 484)])])
async def test_records_fetched_for_a_paused_partition_are_put_back(consumer_class, seeks):
    """The consumer thread drained 484-486 (its position is now 487), but by the time Faust
    hands them out the partition is no longer active (paused, as by a table recovery):
    Faust drops them and the next record, 487, reads as a gap over 484-486 that Faust then
    commits (the Kafka chaos run's lost records, docs/notes/durability.md section 14); ours seeks
    the partition back to 484."""
    rebalances = Rebalances(consumer_class)
    await rebalances.assign(generation=1, committed=484)
    consumer = rebalances.consumer
    records = [
        ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", b"v", None, 1, 1, ())
        for offset in (484, 485, 486)
    ]

    async def drained_while_paused(timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        return {PARTITION: records}, set()

    consumer._wait_next_records = drained_while_paused
    consumer.flow_active = True
    thread = _Thread(position=487)
    consumer._thread = thread

    delivered = [message async for message in consumer.getmany(1.0)]

    assert delivered == []
    assert thread.seeks == seeks

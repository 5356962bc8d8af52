"""Faust's fetch pause for an agent queue under pressure, across a rebalance (engine
correction 9), on a consumer that is never started (``Rebalances`` replays aiokafka's calls)."""

from __future__ import annotations

import pytest
from test_rebalance_bookkeeping import FAUST, OURS, PARTITION, Rebalances


@pytest.mark.parametrize(("consumer_class", "fetched_while_paused"), [(FAUST, True), (OURS, False)])
async def test_a_partition_paused_for_table_recovery_stays_paused_when_its_queue_drains(
    consumer_class, fetched_while_paused
):
    """Faust takes a partition whose agent queue is under pressure out of the fetch set and
    puts it back when the queue drains, whatever paused it meanwhile. A rebalance clears the
    queue without draining it; the drain fires at the agent's next read, which can fall in the
    next generation's table recovery, when every stream partition is paused: Faust then
    fetches that partition, and its agent can fold records before the table is recovered."""
    rebalances = Rebalances(consumer_class)
    consumer = rebalances.consumer
    await rebalances.assign(generation=1, committed=0)
    consumer.on_buffer_full(PARTITION)
    await rebalances.revoke()
    await rebalances.assign(generation=2, committed=0)
    consumer.pause_partitions({PARTITION})  # as the app does until recovery ends
    consumer.on_buffer_drop(PARTITION)

    assert (PARTITION in consumer._get_active_partitions()) is fetched_while_paused
    consumer.resume_partitions({PARTITION})
    assert PARTITION in consumer._get_active_partitions()


@pytest.mark.parametrize("consumer_class", [FAUST, OURS])
async def test_a_drained_queue_still_resumes_its_partition(consumer_class):
    rebalances = Rebalances(consumer_class)
    consumer = rebalances.consumer
    await rebalances.assign(generation=1, committed=0)
    consumer.on_buffer_full(PARTITION)
    assert PARTITION not in consumer._get_active_partitions()
    consumer.on_buffer_drop(PARTITION)
    assert PARTITION in consumer._get_active_partitions()

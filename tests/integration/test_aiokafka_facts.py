"""What aiokafka itself does in a consumer group, on both brokers (``[tansu]``, ``[kafka]``)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata

from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.worker.engine import bind_commits_to_their_assignment

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


def _member(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )


async def _until(condition, *members: AIOKafkaConsumer, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the group did not settle"
        await asyncio.gather(*(m.getmany(timeout_ms=200) for m in members))


async def test_a_commit_made_before_a_rebalance_is_accepted_in_the_next_generation(broker):
    """aiokafka sends a commit with the generation and member id current when it is sent,
    not those of the assignment it was made for: a commit retried across a rebalance (its
    coordinator away meanwhile) lands in the next generation, over offsets that generation
    has not read again. ``streamproc.worker.engine`` binds each commit to its assignment
    (correction 11): the same late commit then fails as a rebalanced one."""
    topic, group = f"gen-{uuid.uuid4().hex[:6]}", f"gen-group-{uuid.uuid4().hex[:6]}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 2)])
    first = _member(broker.bootstrap, topic, group)
    second = _member(broker.bootstrap, topic, group)
    await first.start()
    try:
        await _until(lambda: len(first.assignment()) == 2, first)
        made_in = first._subscription.subscription.assignment
        tp = sorted(first.assignment())[0]
        await second.start()
        await _until(
            lambda: (
                first._subscription.subscription.assignment is not made_in
                and len(first.assignment()) == 1
                and len(second.assignment()) == 1
            ),
            first,
            second,
        )
        late = {tp: OffsetAndMetadata(5, "")}
        await first._coordinator.commit_offsets(made_in, late)  # aiokafka as shipped
        assert await first.committed(tp) == 5

        bind_commits_to_their_assignment(first)
        with pytest.raises(CommitFailedError, match="already rebalanced"):
            await first._coordinator.commit_offsets(made_in, {tp: OffsetAndMetadata(7, "")})
        assert await first.committed(tp) == 5
        current = first._subscription.subscription.assignment
        mine = sorted(first.assignment())[0]
        await first._coordinator.commit_offsets(current, {mine: OffsetAndMetadata(9, "")})
        assert await first.committed(mine) == 9, "a commit of the current assignment failed"
    finally:
        await second.stop()
        await first.stop()


async def test_a_fenced_member_commits_with_no_generation_and_an_empty_group_takes_it(broker):
    """Once the group no longer knows a member (its session expired while the broker was
    away), aiokafka resets the member's generation to -1 and its id to "" and still sends
    its commits; a broker takes a commit with no generation while the group is empty, as a
    lone member's group is then. Faust commits what its revocation acked, records its stream
    skipped included. ``streamproc.worker.engine`` refuses such a commit (correction 11), as
    the Java client does."""
    from aiokafka.protocol.group import LeaveGroupRequest

    topic, group = f"fenced-{uuid.uuid4().hex[:6]}", f"fenced-group-{uuid.uuid4().hex[:6]}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 1)])
    member = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=30000,
        heartbeat_interval_ms=5000,
    )
    await member.start()
    try:
        await _until(lambda: len(member.assignment()) == 1, member)
        [tp] = member.assignment()
        assignment = member._subscription.subscription.assignment
        coordinator = member._coordinator
        # The group forgets the member (as when its session expires); the member learns it
        # from its next response and resets itself, as aiokafka does on UnknownMemberId.
        await coordinator._send_req(LeaveGroupRequest(group, coordinator.member_id))
        coordinator.generation, coordinator.member_id = -1, ""
        await coordinator.commit_offsets(assignment, {tp: OffsetAndMetadata(5, "")})
        assert await member.committed(tp) == 5, "the empty group refused a fenced commit"

        bind_commits_to_their_assignment(member)
        with pytest.raises(CommitFailedError, match="already rebalanced"):
            await coordinator.commit_offsets(assignment, {tp: OffsetAndMetadata(7, "")})
        assert await member.committed(tp) == 5
    finally:
        await member.stop()


async def test_an_offset_fetch_answered_by_a_node_that_is_not_the_coordinator(
    kafka_available, tmp_path
):
    """Kafka only (a 3-node cluster: one node is not the group's coordinator). A node that is
    not the coordinator answers OffsetFetch with a group-level NOT_COORDINATOR and no
    partitions; aiokafka reads only the partitions, so to it "nothing is committed" (a member
    starts over from its reset policy). ``raise_offset_fetch_errors`` raises the group-level
    error instead: aiokafka looks the coordinator up again and reads the committed offset."""
    from aiokafka import TopicPartition
    from aiokafka.protocol.commit import OffsetFetchRequest

    from streamproc.kafka.coordinator import raise_offset_fetch_errors
    from streamproc.local.apache_kafka import KafkaCluster

    with KafkaCluster(tmp_path / "cluster", size=3) as cluster:
        await ensure_topics(cluster.bootstrap, [TopicSpec("fetched", 1)])
        tp = TopicPartition("fetched", 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cluster.bootstrap, group_id="asked", enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: 5})
            coordinator = consumer._coordinator
            right = coordinator.coordinator_id
            wrong = next(b.nodeId for b in consumer._client.cluster.brokers() if b.nodeId != right)
            answer = await consumer._client.send(
                wrong, OffsetFetchRequest("asked", [("fetched", [0])])
            )
            assert (answer.error_code, answer.topics) == (16, [])  # NOT_COORDINATOR, no partitions

            coordinator.coordinator_id = wrong  # as when the coordinator moved unnoticed
            assert await coordinator._do_fetch_commit_offsets([tp]) == {}  # aiokafka as shipped

            raise_offset_fetch_errors(consumer)
            coordinator.coordinator_id = wrong
            assert await consumer.committed(tp) == 5
            assert coordinator.coordinator_id == right
        finally:
            await consumer.stop()

"""The fetch agent's sliding window (``fetch/window.py``): a slow download holds only its own
slot, and a partition is committed only up to its oldest download still running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import ConsumerRecord
from faust.types import TP

from streamproc.fetch.window import SlidingWindow
from streamproc.worker.engine import App, StreamprocConsumer


async def items(count: int) -> AsyncIterator[int]:
    for index in range(count):
        yield index


def window(size: int, handle, finished=None, lanes: int = 1) -> SlidingWindow[int]:
    async def finish(index: int, result: object) -> None:
        if finished is not None:
            finished(index)

    return SlidingWindow(size, handle=handle, finished=finish, lane=lambda index: index % lanes)


async def test_each_request_is_finished_with_what_its_handling_returned():
    results: list[tuple[int, object]] = []

    async def download(index: int) -> str:
        await asyncio.sleep(0.001 * (index % 3))
        return f"file-{index}"

    async def finish(index: int, result: object) -> None:
        await asyncio.sleep(0)  # a finish that suspends keeps its lane's order
        results.append((index, result))

    await SlidingWindow(4, download, finish, lane=lambda index: 0).run(items(12))
    assert results == [(index, f"file-{index}") for index in range(12)]


async def test_a_slow_download_does_not_hold_up_the_others():
    slow_may_end, quick_ones_ended = asyncio.Event(), asyncio.Event()
    ended: list[int] = []

    async def download(index: int) -> None:
        if index == 0:
            await slow_may_end.wait()
        else:
            await asyncio.sleep(0)
        ended.append(index)
        if len(ended) == 19:
            quick_ones_ended.set()

    three = window(3, download)
    run = asyncio.create_task(three.run(items(20)))
    await asyncio.wait_for(quick_ones_ended.wait(), timeout=5)  # through the 2 slots left
    assert 0 not in ended and three.running == 1
    slow_may_end.set()
    await run
    assert sorted(ended) == list(range(20)) and ended[-1] == 0


async def test_requests_finish_in_their_lanes_order_once_all_before_them_ended():
    """Lane 0 holds 0, 2, 4, ...; 0 is slow: nothing of lane 0 finishes before it, lane 1
    goes on; then lane 0 finishes all at once, in order."""
    slow_may_end, lane_1_finished = asyncio.Event(), asyncio.Event()
    finished: list[int] = []

    async def download(index: int) -> None:
        if index == 0:
            await slow_may_end.wait()
        await asyncio.sleep(0.001 * (7 - index % 7))  # later ones often end first

    def finish(index: int) -> None:
        finished.append(index)
        if index == 29:
            lane_1_finished.set()

    two_lanes = window(4, download, finish, lanes=2)
    run = asyncio.create_task(two_lanes.run(items(30)))
    await asyncio.wait_for(lane_1_finished.wait(), timeout=5)
    assert finished == list(range(1, 30, 2))
    slow_may_end.set()
    await run
    assert [index for index in finished if index % 2 == 0] == list(range(0, 30, 2))


async def test_never_more_than_the_window_at_once():
    most = 0

    async def download(index: int) -> None:
        nonlocal most
        most = max(most, four.running)
        await asyncio.sleep(0.001 * (index % 5))

    four = window(4, download)
    await four.run(items(50))
    assert most == 4


async def test_a_failed_download_ends_the_run_with_its_error_and_finishes_nothing_after():
    finished: list[int] = []

    async def download(index: int) -> None:
        if index == 5:
            raise RuntimeError("disk full")
        if index > 5:
            await asyncio.sleep(1)

    with pytest.raises(RuntimeError, match="disk full"):
        await asyncio.wait_for(window(8, download, finished.append).run(items(10)), timeout=0.5)
    assert finished == [0, 1, 2, 3, 4]


def test_a_window_of_nothing_is_refused():
    with pytest.raises(ValueError, match="runs nothing"):
        window(0, handle=None)


async def test_faust_commits_past_an_unacked_record_at_the_committed_offset():
    """Why the window finishes requests in order (a fact of faust-streaming 0.15.3): with
    10 committed (the next record to read) and 10..14 handed out, acks of 11, 12 and 14
    commit 13, although 10 is still running: ``_new_offset`` takes its committed offset for
    a record already done (``min(acked) - committed > 1``)."""
    app = App("window", broker="kafka://127.0.0.1:1")
    app.topics._acking_topics.add("fetch")
    partition = TP("fetch", 0)

    async def nothing(*args: object) -> None:
        pass

    consumer = StreamprocConsumer(
        app.transport,
        callback=nothing,
        on_partitions_revoked=nothing,
        on_partitions_assigned=nothing,
    )
    app.consumer_generation_id = 1
    await consumer.on_partitions_assigned({partition}, 1)
    consumer._committed_offset[partition] = 10
    messages = {}
    for offset in range(10, 15):
        record = ConsumerRecord("fetch", 0, offset, 0, 0, b"k", b"v", None, 1, 1, ())
        messages[offset] = consumer._to_message(partition, record)
        consumer.track_message(messages[offset])
    for offset in (11, 12, 14):
        consumer.ack(messages[offset])
    assert consumer._new_offset(partition) == 13
    assert not messages[10].acked

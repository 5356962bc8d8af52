"""``BatchTable(track_changelog=True)``: an exactly-once agent waits, before it lets a commit
in, until the changelog messages of its batch's table writes are sent (Faust's producer
buffer sends them later, from its own task: they could go into the next transaction)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from faust.streams import _current_event

from streamproc.worker.batch_table import BatchTable


class BufferedChangelogTable(dict):
    """A Faust table's shape: a write hands a message to a buffer and returns its future."""

    def __init__(self) -> None:
        super().__init__()
        self.buffered: list[asyncio.Future[Any]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        super().__setitem__(key, value)
        self.send_changelog(None, key, value)

    def send_changelog(self, partition: Any, key: bytes, value: bytes) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.buffered.append(future)
        return future


class Event:
    pass


def flushed(table: BatchTable, *keys: bytes) -> None:
    """``keys`` written while an event is handled, then the batch's flush."""
    event = Event()
    token = _current_event.set(weakref.ref(event))
    try:
        for key in keys:
            table[key] = b"started"
    finally:
        _current_event.reset(token)
    table.flush()


async def test_the_agent_waits_until_the_batchs_changelog_messages_are_sent():
    faust_table = BufferedChangelogTable()
    table = BatchTable(faust_table, track_changelog=True)
    flushed(table, b"rec-1", b"rec-2")
    waiting = asyncio.create_task(table.changelog_sent())
    await asyncio.sleep(0.01)
    assert len(faust_table.buffered) == 2
    faust_table.buffered[0].set_result("sent")
    await asyncio.sleep(0.01)
    assert not waiting.done(), "one message is still in the buffer"
    faust_table.buffered[1].set_result("sent")
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(table.changelog_sent(), 1)  # nothing new: returns at once


async def test_without_tracking_nothing_is_waited_for():
    faust_table = BufferedChangelogTable()
    table = BatchTable(faust_table)
    flushed(table, b"rec-1")
    await asyncio.wait_for(table.changelog_sent(), 1)
    assert table.changelog_sends == []


async def test_a_crashed_sender_ends_the_wait_with_an_error():
    """Faust's producer buffer crashed (a send into a fenced transaction): its messages will
    never be sent, and the agent must end (the worker restarts) rather than wait forever."""
    await wait_until_the_sender_crashes()


async def wait_until_the_sender_crashes() -> None:
    """A batch's changelog waited for, and the sender crashing meanwhile."""
    faust_table = BufferedChangelogTable()
    table = BatchTable(faust_table, track_changelog=True)
    flushed(table, b"rec-1")
    crashed = asyncio.Event()
    waiting = asyncio.create_task(table.changelog_sent(crashed))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    crashed.set()
    with pytest.raises(RuntimeError, match="crashed"):
        await asyncio.wait_for(waiting, 1)


async def test_the_abandoned_sends_leave_no_unretrieved_error():
    """The sends given up on when the sender crashed are cancelled and their outcome read, so
    asyncio logs no "exception was never retrieved" when they are collected."""
    unretrieved: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context["message"]))
    try:
        await wait_until_the_sender_crashes()
        await asyncio.sleep(0)  # the cancelled sends settle
        gc.collect()
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)

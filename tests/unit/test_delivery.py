"""Stepping a delivery by hand (worker/delivery.py): what finishes at once is delivered with
no task; what has to wait goes on where it stopped, and is still abandoned by Faust's race
when the flow is suspended."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service
from mode.utils.locks import Event

from streamproc.worker.delivery import resume, step, waits_on


async def test_a_callback_that_needs_no_wait_finishes_in_one_step():
    delivered = []

    async def callback():
        delivered.append("record")
        return "done"

    finished, outcome = step(callback())
    assert (finished, outcome, delivered) == (True, "done", ["record"])


async def test_a_callback_that_waits_goes_on_where_it_stopped():
    room = asyncio.get_running_loop().create_future()
    seen = []

    async def callback():
        seen.append("before")
        seen.append(await room)
        return "delivered"

    coroutine = callback()
    finished, waiting_on = step(coroutine)
    assert not finished and waiting_on is room and seen == ["before"]
    task = asyncio.ensure_future(resume(coroutine, waiting_on))
    await asyncio.sleep(0)
    assert not task.done()
    room.set_result("room")
    assert await task == "delivered"
    assert seen == ["before", "room"]


async def test_a_failure_after_the_wait_reaches_the_caller():
    room = asyncio.get_running_loop().create_future()

    async def callback():
        await room
        raise ValueError("bad record")

    coroutine = callback()
    _, waiting_on = step(coroutine)
    task = asyncio.ensure_future(resume(coroutine, waiting_on))
    room.set_result(None)
    with pytest.raises(ValueError, match="bad record"):
        await task


async def test_a_waiting_callback_is_abandoned_when_the_flow_is_suspended():
    """Faust's race (mode's wait_first) against the suspension, as the consumer runs it: the
    callback stopped mid-way is cancelled, so it never puts its record anywhere."""
    full_buffer = asyncio.get_running_loop().create_future()
    suspend_flow = Event()
    outcome = []

    async def callback():
        try:
            await full_buffer
            outcome.append("delivered")
        except asyncio.CancelledError:
            outcome.append("abandoned")
            raise

    coroutine = callback()
    _, waiting_on = step(coroutine)
    suspended = suspend_flow.wait()
    assert waits_on(suspended, suspend_flow)
    race = asyncio.ensure_future(Service().wait_first(resume(coroutine, waiting_on), suspended))
    await asyncio.sleep(0)
    suspend_flow.set()
    result = await race
    await asyncio.sleep(0)
    assert outcome == ["abandoned"]
    assert result.done == [suspended]
    assert full_buffer.cancelled()  # what it waited on went with it, as for a task


async def test_only_the_wait_on_that_event_is_recognised():
    mine, other = Event(), Event()
    coroutines = [other.wait(), asyncio.sleep(0)]
    try:
        assert not any(waits_on(coroutine, mine) for coroutine in coroutines)
    finally:
        for coroutine in coroutines:
            coroutine.close()

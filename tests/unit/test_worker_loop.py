"""The worker runs on uvloop: its agents' loop and Faust's consumer thread's loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
import uvloop

from streamproc.worker.run import use_uvloop


@pytest.fixture
def restore_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


def loop_made_in_a_thread() -> asyncio.AbstractEventLoop:
    """As Faust's consumer thread makes its own loop."""
    made: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=lambda: made.append(asyncio.new_event_loop()))
    thread.start()
    thread.join()
    return made[0]


def test_the_worker_makes_uvloop_loops(restore_policy):
    asyncio.set_event_loop_policy(None)
    default = asyncio.new_event_loop()
    assert not isinstance(default, uvloop.Loop)
    default.close()
    use_uvloop()
    for loop in (asyncio.new_event_loop(), loop_made_in_a_thread()):
        assert isinstance(loop, uvloop.Loop)
        loop.close()

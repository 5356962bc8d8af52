import asyncio

import pytest

from streamproc.edge.dedupe import RecentEvents


async def test_second_delivery_within_the_window_is_not_published():
    recent, calls = RecentEvents(window_s=60, max_entries=10), []

    async def publish():
        calls.append(1)

    assert await recent.once("a", publish) is True
    assert await recent.once("a", publish) is False
    assert await recent.once("b", publish) is True
    assert len(calls) == 2


async def test_concurrent_deliveries_share_one_publish():
    recent, calls = RecentEvents(window_s=60, max_entries=10), []

    async def slow_publish():
        calls.append(1)
        await asyncio.sleep(0.05)

    results = await asyncio.gather(*(recent.once("a", slow_publish) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert len(calls) == 1


async def test_a_failed_publish_is_not_remembered():
    recent = RecentEvents(window_s=60, max_entries=10)

    async def failing():
        raise RuntimeError("broker down")

    async def ok():
        return None

    with pytest.raises(RuntimeError):
        await recent.once("a", failing)
    assert await recent.once("a", ok) is True


async def test_oldest_ids_are_forgotten_past_the_size_bound():
    recent = RecentEvents(window_s=60, max_entries=2)

    async def ok():
        return None

    for event_id in "abc":
        await recent.once(event_id, ok)
    assert await recent.once("a", ok) is True
    assert await recent.once("c", ok) is False

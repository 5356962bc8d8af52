"""Downloads a sliding window at a time.

Up to ``size`` downloads run at once and each one that ends makes room for the next, so a
slow download never idles the others: a batch that waited for its slowest did (a 1 GB file
held seven small ones' slots for its whole transfer).

Requests are *finished* (the agent acks them) in the order they came within their lane (a
partition), each once it and every request before it has ended: Faust commits a partition
up to the first offset missing from its acks, but reads its committed offset as already
done, so a request acked after the one at that offset would commit it unfinished
(``tests/unit/test_download_window.py``). A worker that restarts fetches again from the
oldest download that had not ended; the sink finds what it already has.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class _Entry(Generic[Item]):
    __slots__ = ("ended", "item", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.ended = False
        self.result: Any = None


class _Lane(Generic[Item]):
    """A partition's requests in the order they came; its lock lets one task finish them."""

    def __init__(self) -> None:
        self.entries: deque[_Entry[Item]] = deque()
        self.finishing = asyncio.Lock()


class SlidingWindow(Generic[Item]):
    def __init__(
        self,
        size: int,
        handle: Callable[[Item], Awaitable[Any]],
        finished: Callable[[Item, Any], Awaitable[None]],
        lane: Callable[[Item], Hashable],
    ) -> None:
        """``handle(item)`` runs at most ``size`` at once; ``finished(item, what handle
        returned)`` runs in each lane's order, once the item and all before it ended."""
        if size < 1:
            raise ValueError(f"a window of {size} downloads runs nothing")
        self.size = size
        self.handle = handle
        self.finished = finished
        self.lane = lane
        self.running = 0
        self.lanes: dict[Hashable, _Lane[Item]] = {}

    async def run(self, items: AsyncIterable[Item]) -> None:
        """Handle every item, each as soon as there is room. An error in one cancels the
        others and ends the run with it, finishing nothing more (an agent that raises ends
        the worker)."""
        room = asyncio.Semaphore(self.size)

        async def one(entry: _Entry[Item], lane: _Lane[Item]) -> None:
            self.running += 1
            try:
                entry.result = await self.handle(entry.item)
            finally:
                self.running -= 1
                room.release()
            entry.ended = True
            async with lane.finishing:
                while lane.entries and lane.entries[0].ended:
                    done = lane.entries.popleft()
                    await self.finished(done.item, done.result)

        try:
            async with asyncio.TaskGroup() as group:
                async for item in items:
                    await room.acquire()
                    entry = _Entry(item)
                    lane = self.lanes.setdefault(self.lane(item), _Lane())
                    lane.entries.append(entry)
                    group.create_task(one(entry, lane))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

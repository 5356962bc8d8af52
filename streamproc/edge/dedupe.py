"""Recently published event ids, so a provider's quick retry is answered without a second write.

In memory and per edge process: after a restart, or on another edge replica, a retry is
written again, and the worker's fold de-duplicates it by event id. Concurrent deliveries of
the same id share one publish.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class RecentEvents:
    def __init__(self, window_s: float, max_entries: int) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._published: OrderedDict[str, float] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    def _expire(self, now: float) -> None:
        published = self._published
        while published and (
            len(published) > self._max_entries or next(iter(published.values())) <= now
        ):
            published.popitem(last=False)

    async def once(self, event_id: str, publish: Callable[[], Awaitable[None]]) -> bool:
        """Run ``publish`` unless this id was published within the window; True if it ran."""
        if self._window_s <= 0 or self._max_entries == 0:
            await publish()
            return True
        now = time.monotonic()
        self._expire(now)
        if event_id in self._published:
            return False
        pending = self._in_flight.get(event_id)
        if pending is not None:
            await asyncio.shield(pending)
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[event_id] = future
        try:
            await publish()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(None)
            self._published[event_id] = time.monotonic() + self._window_s
        finally:
            del self._in_flight[event_id]
        return True

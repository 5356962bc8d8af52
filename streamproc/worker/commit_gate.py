"""Exactly-once: a transaction commits between records, never in the middle of one.

Faust commits on a timer, concurrently with the agents. A transaction commits every message
sent in it so far with the offsets acknowledged so far; a commit that fell between a record's
sends and its acknowledgement committed its outputs without its offset, and the record was
handled again (and its outputs sent again) after a crash or a rebalance: the chaos suite's
``exactly-once`` run saw a download message twice. Here agents hold the gate from a record's
(or a batch's) first send until it is acknowledged, and a commit waits until none does; a
commit that waits keeps new records out, so commits are never starved.

With ``at_least_once`` the gate is open: nothing waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any


class CommitGate:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.handling_now = 0
        self._no_handlers = asyncio.Event()
        self._no_handlers.set()
        self._no_commit = asyncio.Event()
        self._no_commit.set()

    @asynccontextmanager
    async def handling(self) -> AsyncIterator[None]:
        """Around a record's (or a batch's) sends and its acknowledgement. Leaving does not
        suspend, so an acknowledgement right after it comes before any commit can start."""
        if not self.enabled:
            yield
            return
        while not self._no_commit.is_set():
            await self._no_commit.wait()
        with self._counted():
            yield

    @contextmanager
    def _counted(self) -> Iterator[None]:
        self.handling_now += 1
        self._no_handlers.clear()
        try:
            yield
        finally:
            self.handling_now -= 1
            if self.handling_now == 0:
                self._no_handlers.set()

    @asynccontextmanager
    async def committing(self) -> AsyncIterator[None]:
        """Around a commit: once no record is being handled, and none starts until it ends."""
        if not self.enabled:
            yield
            return
        while not self._no_commit.is_set():  # one commit at a time
            await self._no_commit.wait()
        self._no_commit.clear()
        try:
            await self._no_handlers.wait()
            yield
        finally:
            self._no_commit.set()


_deferred: ContextVar[list[tuple[Any, dict[str, Any]]] | None] = ContextVar(
    "streamproc_deferred_sends", default=None
)


class DeferringSender:
    """A sender whose messages wait, while ``deferring()`` collects them in this task, to be
    sent with the record's acknowledgement: the fetch agent's downloads end out of order but
    are acknowledged in order, and a download's message must not commit before its offset."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender

    async def send(self, **message: Any) -> Any:
        pending = _deferred.get()
        if pending is None:
            return await self.sender.send(**message)
        pending.append((self.sender, message))
        return None


@contextmanager
def deferring() -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    """Collect what ``DeferringSender``s send in this task (and the tasks it starts)."""
    pending: list[tuple[Any, dict[str, Any]]] = []
    token = _deferred.set(pending)
    try:
        yield pending
    finally:
        _deferred.reset(token)


async def send_deferred(pending: list[tuple[Any, dict[str, Any]]]) -> None:
    for sender, message in pending:
        await sender.send(**message)

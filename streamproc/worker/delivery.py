"""Handing a record to Faust's streams without four tasks per record, where that is safe.

Faust's consumer delivers each record with ``wait_first(callback(message), suspend_flow.wait())``:
mode wraps both, and the service's stopped and crashed events, in tasks and waits for the first, per
record, on the agents' event loop. That, not the fold, is what bounds the worker (bench/README.md,
the profile). The race exists so that a callback that is blocked (a full stream buffer, flow
control) when a rebalance suspends the flow is abandoned, instead of finishing after the rebalance
with a record of a partition this worker may have lost.

``step`` runs the callback one step by hand. A callback that finishes in that step ran with
nothing else on the loop in between, so it is delivered exactly as the race would have
delivered it, a microsecond later. One that has to wait is handed over where it stopped
(``resume``) to Faust's race, which abandons it as before. On by default since 2026-12-02
(``STREAMPROC_DIRECT_DELIVERY=0`` goes back to the race): its gates failed twice before
Faust's stale recovery resume was found and corrected (``engine.py``, 10.), and not in 80
runs since; one of the two failures, a stall, is not explained (docs/notes/durability.md,
section 8).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


def step(coroutine: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run ``coroutine`` until it first waits: ``(True, result)`` if it finished instead,
    ``(False, what it waits on)`` if not. Its exceptions propagate."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration as finished:
        return True, finished.value
    return False, waiting_on


class _Rest:
    """The rest of a coroutine stepped by hand, for a task to drive: it waits on what the
    coroutine waited on, then goes on with it; a cancellation goes into the coroutine."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, Any]:
        coroutine, waiting_on = self.coroutine, self.waiting_on
        while True:
            try:
                yield waiting_on
            except GeneratorExit:  # this awaitable is being closed: so is the coroutine
                coroutine.close()
                raise
            except BaseException as error:  # noqa: BLE001 - cancelled while waiting: it goes into the coroutine
                try:
                    waiting_on = coroutine.throw(error)
                except StopIteration as finished:
                    return finished.value
                continue
            try:
                waiting_on = coroutine.send(None)
            except StopIteration as finished:
                return finished.value


async def resume(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """A coroutine that finishes what ``step`` started."""
    return await _Rest(coroutine, waiting_on)


def waits_on(coroutine: object, event: object) -> bool:
    """True for the not yet started coroutine ``event.wait()`` (how Faust's delivery race
    is told from mode's other uses of ``wait_first``)."""
    frame = getattr(coroutine, "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is event

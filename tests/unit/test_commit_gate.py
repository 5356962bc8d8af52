"""The exactly-once commit gate (``worker/commit_gate.py``): a commit waits for the records
being handled, and keeps new ones out until it ends; with at-least-once nothing waits."""

from __future__ import annotations

import asyncio

import pytest

from streamproc.worker.commit_gate import CommitGate, DeferringSender, deferring, send_deferred


async def test_a_commit_waits_for_the_record_being_handled_and_holds_back_the_next():
    gate = CommitGate(enabled=True)
    order: list[str] = []
    first_may_end = asyncio.Event()

    async def record(name: str, wait: asyncio.Event | None = None) -> None:
        async with gate.handling():
            order.append(f"{name} starts")
            if wait is not None:
                await wait.wait()
            order.append(f"{name} acked")

    async def commit() -> None:
        async with gate.committing():
            order.append("commit")
            await asyncio.sleep(0.01)
            order.append("commit ends")

    first = asyncio.create_task(record("first", first_may_end))
    await asyncio.sleep(0)
    committing = asyncio.create_task(commit())
    await asyncio.sleep(0)
    second = asyncio.create_task(record("second"))
    await asyncio.sleep(0.01)
    assert order == ["first starts"], "the commit waits; the second record waits for it"
    first_may_end.set()
    await asyncio.gather(first, committing, second)
    assert order == ["first starts", "first acked", "commit", "commit ends", "second starts",
                     "second acked"]  # fmt: skip


async def test_leaving_the_gate_does_not_suspend():
    """An acknowledgement right after leaving comes before any commit can start."""
    gate = CommitGate(enabled=True)
    handling = gate.handling()
    await handling.__aenter__()
    leaving = handling.__aexit__(None, None, None)
    with pytest.raises(StopIteration):
        leaving.send(None)  # ran to its end without suspending
    assert gate.handling_now == 0


async def test_an_open_gate_never_waits():
    gate = CommitGate(enabled=False)
    async with gate.handling():
        await asyncio.wait_for(_commit(gate), timeout=1)


async def _commit(gate: CommitGate) -> None:
    async with gate.committing():
        pass


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, **message: object) -> None:
        self.sent.append(message)


async def test_deferred_messages_wait_for_their_record_and_keep_their_order():
    topic = Recorder()
    sender = DeferringSender(topic)
    with deferring() as pending:
        await sender.send(key=b"a", value=b"1")
        await sender.send(key=b"a", value=b"2")
    assert topic.sent == []
    await send_deferred(pending)
    assert [m["value"] for m in topic.sent] == [b"1", b"2"]
    await sender.send(key=b"b", value=b"3")  # not deferring: sent at once
    assert topic.sent[-1]["value"] == b"3"

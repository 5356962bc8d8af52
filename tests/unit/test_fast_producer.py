"""Correction 18: ``App.maybe_start_producer`` gives the started producer at once, as Faust's
stampede-wrapped original does after three trips through the event loop, and its first
callers still start the producer once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from mode import Service

from streamproc.worker.engine import App


class CountedProducer(Service):
    """A producer that counts its starts and takes a moment to start."""

    starts = 0

    async def on_start(self) -> None:
        self.starts += 1
        await asyncio.sleep(0.01)  # the other first callers arrive meanwhile


def app_with(producer: CountedProducer) -> App:
    app = App("fast-producer-test", broker="kafka://127.0.0.1:1")
    app.producer = producer
    return app


async def test_concurrent_first_callers_start_the_producer_once() -> None:
    producer = CountedProducer()
    app = app_with(producer)
    answers = await asyncio.gather(*(app.maybe_start_producer() for _ in range(5)))
    assert answers == [producer] * 5
    assert producer.starts == 1
    await producer.stop()


async def test_a_started_producer_is_given_without_a_trip_through_the_event_loop() -> None:
    producer = CountedProducer()
    app = app_with(producer)
    await app.maybe_start_producer()
    call = app.maybe_start_producer()
    with pytest.raises(StopIteration) as answered:
        call.send(None)  # one step, never suspended (Faust's own yields here three times)
    assert answered.value.value is producer
    assert producer.starts == 1
    await producer.stop()


async def test_in_a_transaction_the_transaction_manager_is_given() -> None:
    app = app_with(CountedProducer())
    transactions = object()
    app.consumer = SimpleNamespace(transactions=transactions)
    app.in_transaction = True
    assert await app.maybe_start_producer() is transactions

"""The worker's fast ``Sender`` (``derivation/sender.py``)."""

from __future__ import annotations

from typing import Any

import faust


class ProducerSender:
    """Sends straight through the app's producer, without ``topic.send``'s per-message
    bookkeeping (which made the worker ~4x slower than a plain Faust fold, see bench/).

    At-least-once: Faust flushes this producer before it commits any offset, so every output
    is acknowledged before the input that caused it is committed. Exactly-once: through the
    transaction manager, which puts the message in the transaction of the record being
    handled (``engine.py``, correction 13), as ``topic.send`` would, without its bookkeeping
    (that cost 0.38-0.41x the rate, docs/notes/performance-history.md, "Exactly-once cost").
    """

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    async def send(
        self, *, key: bytes, value: bytes, headers: Any = None, partition: int | None = None
    ) -> Any:
        app = self.app
        producer = app.consumer.transactions if app.in_transaction else app.producer
        return await producer.send(self.topic, key, value, partition, None, headers)

"""Where the derivation's outputs go: a Kafka topic in the worker, memory in a replay."""

from __future__ import annotations

from typing import Any, Protocol


class Sender(Protocol):
    """A Faust topic, the worker's ``ProducerSender`` or a replay's in-memory topic.
    ``partition``: None for the partition of ``key``."""

    async def send(
        self, *, key: bytes, value: bytes, headers: Any = None, partition: int | None = None
    ) -> Any: ...

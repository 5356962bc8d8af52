"""A replay's worker: the same derivation (``derivation/step.py``) over in-memory tables,
with the worker's internal topics (re-keyed, instances) delivered in memory.

Each raw record is handled as the worker handles it, then everything it sent to an internal
topic is handled in turn (and what that sent, and so on) before the next raw record: the
worker handles those records a little later, in whatever order its partitions are read,
which changes nothing the derivation decides but the order in which a recording meets the
events that reach it that way (``derivation/step.py``).

Outputs are kept only for raw records inside the replayed range, together with everything
handling them caused: a replay from an offset emits what the worker emitted for the records
from that offset on.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from streamproc.derivation.step import Derivation, FoldFunction
from streamproc.kafka.partitions import partition_for
from streamproc.providers import Provider
from streamproc.providers.decode import header_dict
from streamproc.replay.states import ReplayStore
from streamproc.settings import Settings
from streamproc.worker.topics import instances_topic, rekeyed_topic


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]


class InternalTopic:
    """An internal topic as a queue: what is sent is delivered before the next raw record."""

    def __init__(self, name: str, partitions: int, deliveries: deque[Delivery]) -> None:
        self.name = name
        self.partitions = partitions
        self.deliveries = deliveries
        self.offsets: Counter[int] = Counter()

    async def send(
        self, *, key: bytes, value: bytes, headers: Any = None, partition: int | None = None
    ) -> None:
        target = partition if partition is not None else partition_for(key, self.partitions)
        offset = self.offsets[target]
        self.offsets[target] += 1
        self.deliveries.append(
            Delivery(self.name, target, offset, key, value, header_dict(headers))
        )


class Outputs:
    """The derived topics of a replay: (topic, key, value) kept while ``emitting``."""

    def __init__(self, suffix: str | None, counts: Counter[str]) -> None:
        self.suffix = suffix
        self.counts = counts
        self.emitting = True
        self.emitted: list[tuple[str, bytes, bytes]] = []

    def topic(self, name: str) -> OutputTopic:
        return OutputTopic(self, name)


class OutputTopic:
    def __init__(self, outputs: Outputs, name: str) -> None:
        self.outputs = outputs
        self.name = name
        self.written = f"{name}.{outputs.suffix}" if outputs.suffix else name

    async def send(
        self, *, key: bytes, value: bytes, headers: Any = None, partition: int | None = None
    ) -> None:
        if self.outputs.emitting:
            self.outputs.emitted.append((self.written, key, value))
            self.outputs.counts[f"emitted.{self.name}"] += 1


class Discarded:
    """Dead letters: a replay never writes them again (they are in the dead-letter topic)."""

    async def send(
        self, *, key: bytes, value: bytes, headers: Any = None, partition: int | None = None
    ) -> None:
        return None


class ReplayTopology:
    def __init__(
        self,
        settings: Settings,
        partitions: int,
        providers: Mapping[str, Provider],
        *,
        output_suffix: str | None,
        refetch: bool,
        fold_fn: FoldFunction,
        counts: Counter[str],
    ) -> None:
        self.deliveries: deque[Delivery] = deque()
        self.instances = instances_topic(settings)
        self.outputs = Outputs(output_suffix, counts)
        self.store = ReplayStore()
        self.instance_table: dict[bytes, bytes] = {}
        self.folded_into_outputs = 0
        self.derivation = Derivation(
            table=self.store,
            state=self.outputs.topic(settings.state_topic),
            lifecycle=self.outputs.topic(settings.lifecycle_topic),
            fetch_requests=self.outputs.topic(settings.fetch_topic),
            dead_letters=Discarded(),
            rekeyed=InternalTopic(rekeyed_topic(settings), partitions, self.deliveries),
            instances=InternalTopic(self.instances, partitions, self.deliveries),
            instance_table=self.instance_table,
            partitions=partitions,
            providers=providers,
            max_event_bytes=settings.max_body_bytes,
            stall_after_s=settings.stall_after_s,
            refetch=refetch,
            fold_fn=fold_fn,
            dead_letter_log_level=logging.DEBUG,
        )

    async def handle(self, record: ConsumerRecord, *, emit: bool) -> None:
        """One raw record and everything it causes, its outputs kept if ``emit``."""
        self.outputs.emitting = emit
        derivation = self.derivation
        folded = derivation.counts["folded"]
        await derivation.handle_raw(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            header_dict(record.headers),
        )
        while self.deliveries:
            item = self.deliveries.popleft()
            place = (item.topic, item.partition, item.offset, item.key, item.value, item.headers)
            if item.topic == self.instances:
                await derivation.handle_instance(*place)
            else:
                await derivation.handle_raw(*place, rekeyed=True)
        if emit:
            self.folded_into_outputs += derivation.counts["folded"] - folded

"""Daily's ``recording.error`` names only the recording's instance; ``recording.started``
names the instance and the recording. The worker joins the two through the log, as Kafka
Streams does with a repartition topic, so that no state row is ever keyed by an instance id
and a replay from offset 0 joins the same way:

1. an event that names only its instance (``Unlinked``) is sent to the instances topic,
   keyed by instance id, with its original bytes and headers;
2. every folded event that names both sends a *link* (recording id, header
   ``streamproc-link``) to the same topic and key;
3. the join agent keeps, per instance, the linked recording id and the events that came
   before it (at most ``MAX_HELD``; more are dead-lettered): a link releases what was held,
   and an event for a linked instance goes straight on. Released events go to the re-keyed
   topic under their recording's key, with the recording id in ``linked-recording-id``, and
   are folded like any other event (``providers.decode``).

The instances table has a changelog, so what is held survives a restart. An error whose
recording never starts stays held (counted in ``join.held``); announcing it as a failed
start attempt is not done yet (docs in the README's lifecycle section).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

from streamproc.fold import SourcePosition
from streamproc.providers.decode import LINKED_RECORDING_HEADER
from streamproc.worker.senders import Sender

LINK_HEADER = "streamproc-link"
MAX_HELD = 50
"""Events held for one instance that no ``recording.started`` has linked yet."""


DeadLetter = Callable[[str, SourcePosition, bytes, bytes, Mapping[str, bytes]], Awaitable[None]]


class InstanceJoin:
    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        instances: Sender,
        rekeyed: Sender,
        dead_letter: DeadLetter,
        counts: Counter[str],
        max_held: int = MAX_HELD,
    ) -> None:
        self.table = table
        self.instances = instances
        self.rekeyed = rekeyed
        self.dead_letter = dead_letter
        self.counts = counts
        self.max_held = max_held

    async def route(self, instance_id: str, value: bytes, headers: Mapping[str, bytes]) -> None:
        """Step 1: an event known only by its instance goes to the join, keyed by instance."""
        self.counts["join.routed"] += 1
        await self.instances.send(
            key=instance_id.encode(), value=value, headers=list(headers.items())
        )

    async def link(self, instance_id: str, recording_id: str) -> None:
        """Step 2: the instance belongs to this recording (sent again on every such event)."""
        await self.instances.send(
            key=instance_id.encode(),
            value=recording_id.encode(),
            headers=[(LINK_HEADER, b"1")],
        )

    async def handle(
        self, key: bytes, value: bytes, headers: Mapping[str, bytes], source: SourcePosition
    ) -> None:
        """Step 3, for one record of the instances topic."""
        entry = _load(self.table.get(key))
        if LINK_HEADER in headers:
            entry["recording_id"] = entry["recording_id"] or value.decode(errors="replace")
            held, entry["held"] = entry["held"], []
            for item in held:
                await self._release(entry["recording_id"], *_unpack(item))
            self.counts["join.released"] += len(held)
        elif entry["recording_id"]:
            await self._release(entry["recording_id"], value, headers)
            self.counts["join.released"] += 1
        elif len(entry["held"]) >= self.max_held:
            reason = (
                f"instance {key.decode(errors='replace')} already holds {self.max_held} events "
                "and no recording.started has named its recording"
            )
            await self.dead_letter(reason, source, key, value, headers)
            return
        else:
            entry["held"].append(_pack(value, headers))
            self.counts["join.held"] += 1
        self.table[key] = orjson.dumps(entry)

    async def _release(self, recording_id: str, value: bytes, headers: Mapping[str, bytes]) -> None:
        linked = {**headers, LINKED_RECORDING_HEADER: recording_id.encode()}
        await self.rekeyed.send(
            key=recording_id.encode(), value=value, headers=list(linked.items())
        )


def _load(stored: bytes | None) -> dict[str, Any]:
    if stored is None:
        return {"recording_id": None, "held": []}
    return orjson.loads(stored)


def _pack(value: bytes, headers: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "value": base64.b64encode(value).decode(),
        "headers": {name: base64.b64encode(data).decode() for name, data in headers.items()},
    }


def _unpack(item: Mapping[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    headers = {name: base64.b64decode(data) for name, data in item["headers"].items()}
    return base64.b64decode(item["value"]), headers

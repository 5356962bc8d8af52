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

The instances table has a changelog, so what is held survives a restart.

4. An instance whose first held event is ``GRACE_S`` older (in event time) than the newest
   event seen on its partition of the instances topic is announced as a failed start
   attempt: ``recording.start-failed`` on the lifecycle topic, keyed by instance id. Event
   time, not the wall clock, so a replay decides alike; the per-partition watermark and the
   index of held instances are kept in the same table under one key per partition (a Faust
   table writes a change to the partition of the record being handled). Its events stay
   held: a start that comes later still releases them to the recording.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

from streamproc.core.derived import START_GRACE_S
from streamproc.core.events import RESERVED_KEY_PREFIX
from streamproc.core.fold import SourcePosition
from streamproc.providers.decode import LINKED_RECORDING_HEADER
from streamproc.worker.senders import Sender

LINK_HEADER = "streamproc-link"
SUMMARY_HEADER = "streamproc-summary"
"""On a routed event: its id, event time, provider, room and error, for step 4."""
MAX_HELD = 50
"""Events held for one instance that no ``recording.started`` has linked yet."""
GRACE_S = START_GRACE_S


DeadLetter = Callable[[str, SourcePosition, bytes, bytes, Mapping[str, bytes]], Awaitable[None]]
Announce = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class InstanceJoin:
    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        instances: Sender,
        rekeyed: Sender,
        dead_letter: DeadLetter,
        announce: Announce,
        counts: Counter[str],
        max_held: int = MAX_HELD,
        grace_s: float = GRACE_S,
    ) -> None:
        self.announce = announce
        self.grace_s = grace_s
        self.table = table
        self.instances = instances
        self.rekeyed = rekeyed
        self.dead_letter = dead_letter
        self.counts = counts
        self.max_held = max_held

    async def route(
        self,
        instance_id: str,
        value: bytes,
        headers: Mapping[str, bytes],
        summary: Mapping[str, Any],
    ) -> None:
        """Step 1: an event known only by its instance goes to the join, keyed by instance.
        ``summary``: its ``event_id``, ``at`` (event time), ``provider``, ``room``, ``error``."""
        self.counts["join.routed"] += 1
        routed = {**headers, SUMMARY_HEADER: orjson.dumps(summary)}
        await self.instances.send(
            key=instance_id.encode(), value=value, headers=list(routed.items())
        )

    async def link(self, instance_id: str, recording_id: str, at: float) -> None:
        """Step 2: the instance belongs to this recording (sent again on every such event)."""
        await self.instances.send(
            key=instance_id.encode(),
            value=orjson.dumps({"recording_id": recording_id, "at": at}),
            headers=[(LINK_HEADER, b"1")],
        )

    async def handle(
        self,
        key: bytes,
        value: bytes,
        headers: Mapping[str, bytes],
        source: SourcePosition,
        partition: int,
    ) -> None:
        """Steps 3 and 4, for one record of partition ``partition`` of the instances topic."""
        instance = key.decode(errors="replace")
        entry = _load(self.table.get(key))
        pending = self._pending(partition)
        if LINK_HEADER in headers:
            link = orjson.loads(value)
            at = float(link["at"])
            entry["recording_id"] = entry["recording_id"] or link["recording_id"]
            held, entry["held"] = entry["held"], []
            for item in held:
                await self._release(entry["recording_id"], *_unpack(item))
            self.counts["join.released"] += len(held)
            pending["held"].pop(instance, None)
        else:
            summary = orjson.loads(headers.get(SUMMARY_HEADER, b"{}"))
            at = float(summary.get("at", 0.0))
            if entry["recording_id"]:
                await self._release(entry["recording_id"], value, headers)
                self.counts["join.released"] += 1
            elif len(entry["held"]) >= self.max_held:
                reason = (
                    f"instance {instance} already holds {self.max_held} events "
                    "and no recording.started has named its recording"
                )
                await self.dead_letter(reason, source, key, value, headers)
            else:
                entry["held"].append(_pack(value, headers))
                self.counts["join.held"] += 1
                if not entry.get("announced"):
                    pending["held"].setdefault(instance, summary)
        self.table[key] = orjson.dumps(entry)
        pending["watermark"] = max(pending["watermark"], at)
        await self._announce_overdue(pending)
        self.table[_pending_key(partition)] = orjson.dumps(pending)

    def _pending(self, partition: int) -> dict[str, Any]:
        stored = self.table.get(_pending_key(partition))
        return {"watermark": 0.0, "held": {}} if stored is None else orjson.loads(stored)

    async def _announce_overdue(self, pending: dict[str, Any]) -> None:
        """Step 4: every held instance ``grace_s`` behind the partition's newest event."""
        overdue = [
            (instance, summary)
            for instance, summary in pending["held"].items()
            if float(summary.get("at", 0.0)) < pending["watermark"] - self.grace_s
        ]
        for instance, summary in overdue:
            await self.announce(instance, summary)
            self.counts["join.start_failed"] += 1
            del pending["held"][instance]
            entry = _load(self.table.get(instance.encode()))
            entry["announced"] = True
            self.table[instance.encode()] = orjson.dumps(entry)

    async def _release(self, recording_id: str, value: bytes, headers: Mapping[str, bytes]) -> None:
        linked = {**headers, LINKED_RECORDING_HEADER: recording_id.encode()}
        await self.rekeyed.send(
            key=recording_id.encode(), value=value, headers=list(linked.items())
        )


def _pending_key(partition: int) -> bytes:
    """Not an instance id (those never start with NUL): one key per instances partition."""
    return RESERVED_KEY_PREFIX + b"pending:%d" % partition


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

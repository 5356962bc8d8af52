"""Daily's ``recording.error`` names only the recording's instance; ``recording.started``
names the instance and the recording. The derivation joins the two through the log, as Kafka
Streams does with a repartition topic, so that no state row is ever keyed by an instance id:

1. an event that names only its instance (``Unlinked``) is sent to the instances topic,
   keyed by instance id, with its original bytes and headers;
2. a raw event that names both sends a *link* (recording id, header ``streamproc-link``) to
   the same topic and key, once per (instance, recording) as far as the sender remembers;
3. the join keeps, per instance, the linked recording id and the events that came before it
   (at most ``MAX_HELD``; more are dead-lettered): a link releases what was held, and an
   event for a linked instance goes straight on. Released events go to the re-keyed topic
   under their recording's key, with the recording id in ``linked-recording-id``, and are
   folded like any other event (``providers.decode``).

The instances table has a changelog, so what is held survives a restart.

4. An instance is announced as a failed start attempt (``recording.start-failed`` on the
   lifecycle topic, keyed by instance id) when no ``recording.started`` came within
   ``GRACE_S`` of event time after its first error. "Came within" is decided by the raw
   log alone, so that the worker and a replay decide alike whatever order the instances
   topic receives things in:

   - every link and routed event carries the *mark* of its raw partition
     (``watermarks.py``: the newest event time read there, in steps) as it was read, and each
     raw partition sends its mark to every instances partition when it moves on;
   - a start counts for an error at time T if its link's mark is at most T + ``GRACE_S``;
     an error counts only if its own mark is at most T + ``GRACE_S`` (a later one is *late*:
     it is held and released as usual, but never announced);
   - an instance is decided once every raw partition's mark is past T + ``GRACE_S``, T the
     time of its earliest counting error: a partition's links with marks up to there were
     sent before its mark passed it, so they are all in. It is announced if none of its
     links counts. Its events stay held: a start that comes later still releases them.

   A raw partition that has read no event holds every decision back.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

from streamproc.core.derived import START_GRACE_S
from streamproc.core.events import RESERVED_KEY_PREFIX
from streamproc.core.fold import SourcePosition
from streamproc.derivation.sender import Sender
from streamproc.providers.decode import LINKED_RECORDING_HEADER

LINK_HEADER = "streamproc-link"
MARK_HEADER = "streamproc-mark"
"""On a raw partition's mark, sent to every instances partition."""
SUMMARY_HEADER = "streamproc-summary"
"""On a routed event: its id, event time, provider, room, error and mark, for step 4."""
MARK_KEY = RESERVED_KEY_PREFIX + b"mark"
"""The key of a mark record (not an instance id: those never start with NUL)."""
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
        raw_partitions: int,
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
        self.raw_partitions = raw_partitions
        self.max_held = max_held

    async def route(
        self,
        instance_id: str,
        value: bytes,
        headers: Mapping[str, bytes],
        summary: Mapping[str, Any],
    ) -> None:
        """Step 1: an event known only by its instance goes to the join, keyed by instance.
        ``summary``: its ``event_id``, ``at`` (event time), ``provider``, ``room``, ``error``
        and ``mark`` (None for a record not read from the raw topic)."""
        self.counts["join.routed"] += 1
        routed = {**headers, SUMMARY_HEADER: orjson.dumps(summary)}
        await self.instances.send(
            key=instance_id.encode(), value=value, headers=list(routed.items())
        )

    async def link(self, instance_id: str, recording_id: str, mark: float | None) -> None:
        """Step 2: the instance belongs to this recording; ``mark`` as in ``route``."""
        self.counts["join.linked"] += 1
        await self.instances.send(
            key=instance_id.encode(),
            value=orjson.dumps({"recording_id": recording_id, "mark": mark}),
            headers=[(LINK_HEADER, b"1")],
        )

    async def send_mark(self, raw_partition: int, mark: float) -> None:
        """Step 4: raw partition ``raw_partition`` has read up to ``mark``, to every join."""
        value = orjson.dumps({"partition": raw_partition, "mark": mark})
        for partition in range(self.raw_partitions):
            await self.instances.send(
                key=MARK_KEY, value=value, headers=[(MARK_HEADER, b"1")], partition=partition
            )

    async def handle(
        self,
        key: bytes,
        value: bytes,
        headers: Mapping[str, bytes],
        source: SourcePosition,
        partition: int,
    ) -> None:
        """Steps 3 and 4, for one record of partition ``partition`` of the instances topic.
        The partition's pending record is written only when it changed: most records are
        links, which change nothing there, and each write is a changelog message."""
        stored = self.table.get(_pending_key(partition))
        pending = _load_pending(stored)
        if MARK_HEADER in headers:
            mark = orjson.loads(value)
            raw_partition = str(mark["partition"])
            marks = pending["marks"]
            marks[raw_partition] = max(marks.get(raw_partition, 0.0), float(mark["mark"]))
        else:
            await self._join(key, value, headers, source, pending)
        await self._decide(pending)
        _store(self.table, _pending_key(partition), stored, pending)

    async def _join(
        self,
        key: bytes,
        value: bytes,
        headers: Mapping[str, bytes],
        source: SourcePosition,
        pending: dict[str, Any],
    ) -> None:
        instance = key.decode(errors="replace")
        stored = self.table.get(key)
        entry = _load(stored)
        if LINK_HEADER in headers:
            link = orjson.loads(value)
            entry["recording_id"] = entry["recording_id"] or link["recording_id"]
            if link.get("mark") is not None:
                entry["link_mark"] = min(_link_mark(entry), float(link["mark"]))
            held, entry["held"] = entry["held"], []
            for item in held:
                await self._release(entry["recording_id"], *_unpack(item))
            self.counts["join.released"] += len(held)
        else:
            summary = orjson.loads(headers.get(SUMMARY_HEADER, b"{}"))
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
            if not entry["decided"] and self._counts(summary):
                current = pending["candidates"].get(instance)
                if current is None or _order(summary) < _order(current):
                    pending["candidates"][instance] = _candidate(summary)
        _store(self.table, key, stored, entry)

    def _counts(self, summary: Mapping[str, Any]) -> bool:
        """An error read before its raw partition's mark passed its time plus the grace."""
        mark = summary.get("mark")
        return mark is not None and float(mark) <= float(summary.get("at", 0.0)) + self.grace_s

    async def _decide(self, pending: dict[str, Any]) -> None:
        """Step 4: every candidate whose grace every raw partition's mark has passed."""
        marks = pending["marks"]
        if len(marks) < self.raw_partitions or not pending["candidates"]:
            return
        low = min(marks.values())
        due = [
            (instance, summary)
            for instance, summary in pending["candidates"].items()
            if float(summary["at"]) + self.grace_s < low
        ]
        for instance, summary in sorted(due, key=lambda item: _order(item[1])):
            del pending["candidates"][instance]
            entry = _load(self.table.get(instance.encode()))
            entry["decided"] = True
            if _link_mark(entry) > float(summary["at"]) + self.grace_s:
                await self.announce(instance, summary)
                self.counts["join.start_failed"] += 1
            self.table[instance.encode()] = orjson.dumps(entry)

    async def _release(self, recording_id: str, value: bytes, headers: Mapping[str, bytes]) -> None:
        linked = {**headers, LINKED_RECORDING_HEADER: recording_id.encode()}
        await self.rekeyed.send(
            key=recording_id.encode(), value=value, headers=list(linked.items())
        )


def held_instances(table: Mapping[bytes, bytes]) -> dict[str, int]:
    """Instance id -> events held for it, for every instance no start has linked."""
    held = {}
    for key, stored in table.items():
        if key.startswith(RESERVED_KEY_PREFIX):
            continue
        entry = _load(stored)
        if entry["held"] and not entry["recording_id"]:
            held[key.decode(errors="replace")] = len(entry["held"])
    return held


def _pending_key(partition: int) -> bytes:
    """Not an instance id (those never start with NUL): one key per instances partition."""
    return RESERVED_KEY_PREFIX + b"pending:%d" % partition


def _load_pending(stored: bytes | None) -> dict[str, Any]:
    pending = {} if stored is None else orjson.loads(stored)
    return {"marks": pending.get("marks", {}), "candidates": pending.get("candidates", {})}


def _store(
    table: MutableMapping[bytes, bytes], key: bytes, stored: bytes | None, value: Any
) -> None:
    """``value`` into ``table`` unless ``stored`` already says the same."""
    encoded = orjson.dumps(value)
    if encoded != stored:
        table[key] = encoded


def _candidate(summary: Mapping[str, Any]) -> dict[str, Any]:
    fields = ("event_id", "at", "provider", "room", "error")
    return {name: summary.get(name) for name in fields} | {"at": float(summary.get("at", 0.0))}


def _order(summary: Mapping[str, Any]) -> tuple[float, str]:
    """The earliest error decides (event time, then id: the same in any arrival order)."""
    return float(summary.get("at", 0.0)), str(summary.get("event_id", ""))


def _link_mark(entry: Mapping[str, Any]) -> float:
    mark = entry.get("link_mark")
    return math.inf if mark is None else float(mark)


def _load(stored: bytes | None) -> dict[str, Any]:
    entry = {} if stored is None else orjson.loads(stored)
    return {
        "recording_id": entry.get("recording_id"),
        "held": entry.get("held", []),
        "link_mark": entry.get("link_mark"),
        "decided": entry.get("decided", entry.get("announced", False)),
    }


def _pack(value: bytes, headers: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "value": base64.b64encode(value).decode(),
        "headers": {name: base64.b64encode(data).decode() for name, data in headers.items()},
    }


def _unpack(item: Mapping[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    headers = {name: base64.b64decode(data) for name, data in item["headers"].items()}
    return base64.b64decode(item["value"]), headers

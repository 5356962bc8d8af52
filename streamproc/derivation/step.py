"""The derivation: what happens to each raw record, written once for the worker and for
``streamproc replay``, in an order that loses nothing on a crash.

For a raw record the steps are:

1. decode it to a canonical event (or dead-letter it, or count and skip it); an event read
   from the raw topic moves its partition's mark (``watermarks.py``); an event that names
   only its instance goes to the instance join instead (``join.py``) and stops, and one
   that names its instance and its recording sends the join a link;
2. if its Kafka key is not the recording id, or it is not on the partition Kafka's default
   partitioner gives that key (a producer with another partitioner), forward it to the
   re-keyed topic and stop (so every recording's state lives in one partition);
3. fold it into the recording's table entry;
4. send the new state, one lifecycle message per transition, and a fetch request on the
   first ``finished``; then let the partition's stall clock (``stalls.py``) declare the
   recordings that stalled; and if the record moved its partition's mark, send the mark to
   the join.

No Kafka and no Faust here: tables are mappings and outputs go to ``Sender``s. The worker
(``worker/pipeline.py``) gives it Faust tables and Kafka topics and commits a record's
offset once its outputs are acknowledged; a replay (``replay/topology.py``) gives it
in-memory ones and delivers the internal topics (re-keyed, instances) itself.

A crash before the commit redelivers the record. If the table already holds it (its
changelog write got out, the other sends did not), the fold sees the same log position and
emits that record's transitions and fetch request again; a provider's duplicate at a new
position emits nothing. Derived messages carry deterministic ids, and the fetcher skips files
it already stored. So the pipeline is at-least-once with idempotent outputs; nothing is lost
and a consumer can de-duplicate by id.

What the worker and a replay from offset 0 emit is the same but for one thing the raw log
cannot fix: the order in which a recording meets the events that reach it through the
re-keyed topic (events of another producer keyed by something else, and errors released by
the join) among its own. The fold's final state does not depend on that order; its
intermediate states and transitions can.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from streamproc.core import derived
from streamproc.core.events import RecordingEvent
from streamproc.core.fold import FoldOutput, RecordingState, SourcePosition, fold
from streamproc.core.stalls import StallClock
from streamproc.derivation.join import InstanceJoin
from streamproc.derivation.sender import Sender
from streamproc.derivation.watermarks import RawWatermarks
from streamproc.kafka.partitions import partition_for
from streamproc.providers import Provider
from streamproc.providers.decode import (
    MAX_EVENT_BYTES,
    Skipped,
    Unlinked,
    Unusable,
    decode_record,
)
from streamproc.settings import STALL_AFTER_S

log = logging.getLogger(__name__)
SOURCE_HEADERS = ("source-topic", "source-partition", "source-offset")
LINKS_REMEMBERED = 100_000
"""(instance, recording) pairs whose link was sent, kept to send each once: a link sent
again (after a restart, or for a pair forgotten) changes nothing at the join."""
FoldFunction = Callable[..., tuple[RecordingState, FoldOutput]]


class Derivation:
    def __init__(
        self,
        *,
        table: MutableMapping[bytes, bytes],
        state: Sender,
        lifecycle: Sender,
        fetch_requests: Sender,
        dead_letters: Sender,
        rekeyed: Sender,
        instances: Sender,
        instance_table: MutableMapping[bytes, bytes],
        partitions: int,
        providers: Mapping[str, Provider],
        max_event_bytes: int = MAX_EVENT_BYTES,
        stall_after_s: float = STALL_AFTER_S,
        infrastructure_errors: tuple[type[BaseException], ...] = (),
        refetch: bool = False,
        fold_fn: FoldFunction = fold,
        dead_letter_log_level: int = logging.WARNING,
    ) -> None:
        """``infrastructure_errors``: raised, never dead-lettered (they are not the record's
        fault: the caller's crash gets the record read again). ``refetch``: fetch requests
        ask for files the sink already has (``streamproc replay --refetch``).
        ``dead_letter_log_level``: a replay, which counts what the worker dead-lettered
        already, logs it at DEBUG."""
        self.partitions = partitions
        self.stalls = StallClock(table, stall_after_s, partitions)
        self.marks = RawWatermarks(table)
        self.max_event_bytes = max_event_bytes
        self.providers = providers
        self.table = table
        self.state = state
        self.lifecycle = lifecycle
        self.fetch_requests = fetch_requests
        self.dead_letters = dead_letters
        self.rekeyed = rekeyed
        self.infrastructure_errors = infrastructure_errors
        self.refetch = refetch
        self.fold_fn = fold_fn
        self.dead_letter_log_level = dead_letter_log_level
        self.counts: Counter[str] = Counter()
        self.linked: OrderedDict[tuple[str, str, bool], None] = OrderedDict()
        self.join = InstanceJoin(
            instance_table,
            instances,
            rekeyed,
            self._dead_letter_join,
            self._announce_start_failed,
            self.counts,
            raw_partitions=partitions,
        )

    async def dead_letter(
        self,
        stage: str,
        reason: str,
        source: SourcePosition,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        recording_id: str | None = None,
    ) -> None:
        """The one failure policy: log with position and recording, then dead-letter."""
        self.counts[f"dead_lettered.{stage}"] += 1
        log.log(
            self.dead_letter_log_level,
            "dead-lettering %s:%d@%d (recording %s) at %s: %s",
            source.topic,
            source.partition,
            source.offset,
            recording_id,
            stage,
            reason,
        )
        message = derived.dead_letter_message(
            stage=stage,
            reason=reason,
            source=source,
            key=key,
            value=value,
            headers=headers.items(),
            recording_id=recording_id,
        )
        await self.dead_letters.send(key=key or b"", value=derived.encode(message))

    async def handle_raw(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        rekeyed: bool = False,
    ) -> None:
        """Steps 1-4 for one raw (or re-keyed) record; never raises on bad input.

        A re-keyed record is one forwarded by the derivation (step 2, the join, or the
        worker's sweeper): its headers point at its place in the raw topic, which is what
        provenance reports. It moves no mark: its raw partition's did when it was read.
        """
        self.counts["records"] += 1
        log.debug("raw record %s:%d@%d key=%r", topic, partition, offset, key)
        source = (
            original_source(topic, partition, offset, headers)
            if rekeyed
            else SourcePosition(topic, partition, offset)
        )
        decoded = decode_record(value, headers, self.max_event_bytes, self.providers)
        if isinstance(decoded, Unusable):
            await self.dead_letter("decode", decoded.reason, source, key, value, headers)
            return
        if isinstance(decoded, Skipped):
            self.counts[f"skipped.{decoded.provider}.{decoded.event_type}"] += 1
            return
        event = decoded.event if isinstance(decoded, Unlinked) else decoded
        mark, moved = None, False
        if not rekeyed:
            mark, moved = self.marks.advance(partition, event.occurred_at)
        here = SourcePosition(topic, partition, offset)
        folded = await self._to_recording(here, key, value, headers, source, decoded, mark)
        if folded is not None or not rekeyed:
            await self._observe_time(here, folded, event, advance=not rekeyed)
        if moved:
            await self.join.send_mark(partition, mark)

    async def _to_recording(
        self,
        here: SourcePosition,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        source: SourcePosition,
        decoded: RecordingEvent | Unlinked,
        mark: float | None,
    ) -> RecordingState | None:
        """Steps 1 (the join) to 4 for a decoded event read at ``here``; the state it
        changed, if any."""
        if isinstance(decoded, Unlinked):
            event = decoded.event
            summary = {
                "event_id": event.event_id,
                "at": event.occurred_at,
                "provider": event.provider,
                "room": event.room,
                "error": event.error,
                "mark": mark,
            }
            routed = {**headers, **source_headers(source)}
            await self.join.route(decoded.instance_id, value or b"", routed, summary)
            return None
        if decoded.instance_id:
            await self._link(decoded.instance_id, decoded.recording_id, mark)
        recording_key = decoded.recording_id.encode()
        if key != recording_key or here.partition != partition_for(recording_key, self.partitions):
            self.counts["rekeyed"] += 1
            forwarded = {**headers, **source_headers(source)}
            await self.rekeyed.send(key=recording_key, value=value, headers=list(forwarded.items()))
            return None
        try:
            return await self._fold(recording_key, decoded, source, here)
        except self.infrastructure_errors:
            raise
        except Exception as exc:
            log.exception("fold failed for %s", decoded.recording_id)
            await self.dead_letter(
                "fold", repr(exc), source, key, value, headers, decoded.recording_id
            )
            return None

    async def _link(self, instance_id: str, recording_id: str, mark: float | None) -> None:
        """Step 1's link, once per pair (a link with a mark also after one without)."""
        remembered = (instance_id, recording_id, mark is not None)
        if remembered in self.linked:
            self.linked.move_to_end(remembered)
            return
        await self.join.link(instance_id, recording_id, mark)
        self.linked[remembered] = None
        if len(self.linked) > LINKS_REMEMBERED:
            self.linked.popitem(last=False)

    async def handle_instance(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
    ) -> None:
        """One record of the instances topic: a link, a mark or an event to join."""
        source = original_source(topic, partition, offset, headers)
        try:
            await self.join.handle(key or b"", value or b"", headers, source, partition)
        except self.infrastructure_errors:
            raise
        except Exception as exc:  # a record the derivation did not write (the topic is internal)
            log.exception("instance join failed for %s:%d@%d", topic, partition, offset)
            await self.dead_letter("join", repr(exc), source, key, value, headers)

    async def _announce_start_failed(self, instance_id: str, summary: Mapping[str, Any]) -> None:
        message = derived.start_failed_message(
            provider=str(summary.get("provider", "")),
            instance_id=instance_id,
            caused_by=str(summary.get("event_id", "")),
            occurred_at=float(summary.get("at", 0.0)),
            room=summary.get("room"),
            error=summary.get("error"),
        )
        await self.lifecycle.send(key=instance_id.encode(), value=derived.encode(message))

    async def _dead_letter_join(
        self,
        reason: str,
        source: SourcePosition,
        key: bytes,
        value: bytes,
        headers: Mapping[str, bytes],
    ) -> None:
        await self.dead_letter("join", reason, source, key, value, headers)

    def _state(self, recording_id: str) -> RecordingState | None:
        stored = self.table.get(recording_id.encode())
        return None if stored is None else RecordingState.from_json(stored)

    async def _fold(
        self, key: bytes, event: RecordingEvent, source: SourcePosition, here: SourcePosition
    ) -> RecordingState | None:
        """``source``: the event's place in the raw topic (provenance); ``here``: the record
        being handled (a re-keyed one is on another topic), which tells a redelivery."""
        new_state, output = self.fold_fn(self._state(event.recording_id), event, source, here)
        if output.changed or output.redelivered:
            # A redelivered record is written again too: a rocksdb store can hold a write
            # whose changelog record never got out before a kill.
            self.counts["redelivered" if output.redelivered else "folded"] += 1
            self.table[key] = new_state.to_json()
        else:
            self.counts["duplicates"] += 1
            return None
        await self._publish(new_state, output, event.event_id)
        return new_state

    async def _observe_time(
        self,
        here: SourcePosition,
        folded: RecordingState | None,
        event: RecordingEvent,
        *,
        advance: bool,
    ) -> None:
        """The partition's stall clock (``stalls.py``): moved on by every event read from
        the raw topic, folded or not; then the recordings that stalled."""
        stalled = self.stalls.observe(
            here.partition,
            folded,
            event.event_id,
            event.occurred_at if advance else None,
            self._state,
            position=(f"{here.topic}:{here.partition}", here.offset),
        )
        for item in stalled:
            if item.output.changed:
                self.counts["stalled"] += 1
                self.table[item.state.recording_id.encode()] = item.state.to_json()
            await self._publish(item.state, item.output, event.event_id)

    async def _publish(self, state: RecordingState, output: FoldOutput, event_id: str) -> None:
        senders = {"state": self.state, "lifecycle": self.lifecycle, "fetch": self.fetch_requests}
        key = state.recording_id.encode()
        for kind, message in derived.fold_messages(state, output, event_id, self.refetch):
            await senders[kind].send(key=key, value=derived.encode(message))


def source_headers(source: SourcePosition) -> dict[str, bytes]:
    """Headers that keep a forwarded record pointing at its place in the raw topic."""
    values = (source.topic.encode(), b"%d" % source.partition, b"%d" % source.offset)
    return dict(zip(SOURCE_HEADERS, values, strict=True))


def original_source(
    topic: str, partition: int, offset: int, headers: Mapping[str, bytes]
) -> SourcePosition:
    """Re-keyed records keep pointing at their place in the raw topic."""
    try:
        return SourcePosition(
            headers["source-topic"].decode(),
            int(headers["source-partition"]),
            int(headers["source-offset"]),
        )
    except (KeyError, ValueError):
        return SourcePosition(topic, partition, offset)

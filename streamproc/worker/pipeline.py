"""What the agents do with each message, in an order that loses nothing on a crash.

For a raw record the steps are:

1. decode it to a canonical event (or dead-letter it, or count and skip it); an event that
   names only its instance goes to the instance join instead (``join.py``) and stops;
2. if its Kafka key is not the recording id, or it is not on the partition Kafka's default
   partitioner gives that key (a producer with another partitioner), forward it to the
   re-keyed topic and stop (so every recording's state lives in one partition);
3. fold it into the recording's table entry (the table's changelog is written by Faust);
4. send the new state, one lifecycle message per transition, and a fetch request on the
   first ``finished`` (and, for an event naming an instance too, a link to the join); then
   let the partition's stall clock (``stalls.py``) declare the recordings that stalled;
5. Faust flushes those sends, then commits the record's offset.

A crash before 5 redelivers the record. If the table already holds it (its changelog write
got out, the other sends did not), the fold sees the same log position and emits that
record's transitions and fetch request again; a provider's duplicate at a new position
emits nothing. Derived messages carry deterministic ids, and the fetcher skips files it
already stored. So the
pipeline is at-least-once with idempotent outputs; nothing is lost and a consumer can
de-duplicate by id.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust.exceptions import FaustError

from streamproc.core import derived
from streamproc.core.fold import FoldOutput, RecordingState, SourcePosition, fold
from streamproc.core.stalls import StallClock
from streamproc.fetch.errors import FetchError
from streamproc.fetch.fetcher import Fetcher
from streamproc.kafka.partitions import partition_for
from streamproc.providers import Provider
from streamproc.providers.decode import (
    MAX_EVENT_BYTES,
    Skipped,
    Unlinked,
    Unusable,
    decode_record,
    header_dict,
)
from streamproc.settings import STALL_AFTER_S
from streamproc.worker.join import InstanceJoin
from streamproc.worker.senders import Sender

log = logging.getLogger(__name__)
NOT_THE_RECORDS_FAULT = (KafkaError, FaustError)
"""Errors of Kafka or the engine, not of the record being handled: they are raised, not
dead-lettered; the agent's crash ends the worker and the next one reads the record again
(``worker/engine.py`` correction 8; a table's ``PartitionsMismatch`` once dead-lettered
good events, docs/notes/durability.md section 10)."""
SOURCE_HEADERS = ("source-topic", "source-partition", "source-offset")


class Pipeline:
    def __init__(
        self,
        *,
        table: MutableMapping[bytes, bytes],
        state: Sender,
        lifecycle: Sender,
        fetch_requests: Sender,
        downloads: Sender,
        dead_letters: Sender,
        rekeyed: Sender,
        instances: Sender,
        instance_table: MutableMapping[bytes, bytes],
        partitions: int,
        max_event_bytes: int = MAX_EVENT_BYTES,
        providers: Mapping[str, Provider],
        stall_after_s: float = STALL_AFTER_S,
    ) -> None:
        self.partitions = partitions
        self.stalls = StallClock(table, stall_after_s, partitions)
        self.max_event_bytes = max_event_bytes
        self.providers = providers
        self.table = table
        self.state = state
        self.lifecycle = lifecycle
        self.fetch_requests = fetch_requests
        self.downloads = downloads
        self.dead_letters = dead_letters
        self.rekeyed = rekeyed
        self.counts: Counter[str] = Counter()
        self.join = InstanceJoin(
            instance_table,
            instances,
            rekeyed,
            self._dead_letter_join,
            self._announce_start_failed,
            self.counts,
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
        log.warning(
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

        A re-keyed record is one forwarded by this worker (see step 2 and ``gaps.py``): its
        headers point at its place in the raw topic, which is what provenance reports.
        """
        self.counts["records"] += 1
        log.debug("raw record %s:%d@%d key=%r", topic, partition, offset, key)
        source = (
            _original_source(topic, partition, offset, headers)
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
        if isinstance(decoded, Unlinked):
            event = decoded.event
            summary = {
                "event_id": event.event_id,
                "at": event.occurred_at,
                "provider": event.provider,
                "room": event.room,
                "error": event.error,
            }
            routed = {**headers, **_source_headers(source)}
            await self.join.route(decoded.instance_id, value or b"", routed, summary)
            return
        recording_key = decoded.recording_id.encode()
        if key != recording_key or partition != partition_for(recording_key, self.partitions):
            self.counts["rekeyed"] += 1
            forwarded = {**headers, **_source_headers(source)}
            await self.rekeyed.send(key=recording_key, value=value, headers=list(forwarded.items()))
            return
        try:
            here = SourcePosition(topic, partition, offset)
            await self._fold(recording_key, decoded, source, here)
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception as exc:
            log.exception("fold failed for %s", decoded.recording_id)
            await self.dead_letter(
                "fold", repr(exc), source, key, value, headers, decoded.recording_id
            )
            return
        if decoded.instance_id:
            await self.join.link(decoded.instance_id, decoded.recording_id, decoded.occurred_at)

    async def handle_instance(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
    ) -> None:
        """One record of the instances topic: a link or an event to join (``join.py``)."""
        source = _original_source(topic, partition, offset, headers)
        try:
            await self.join.handle(key or b"", value or b"", headers, source, partition)
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception as exc:  # a record this worker did not write (the topic is internal)
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
        self, key: bytes, event: Any, source: SourcePosition, here: SourcePosition
    ) -> None:
        """``source``: the event's place in the raw topic (provenance); ``here``: the record
        being handled (a re-keyed one is on another topic), which tells a redelivery and
        places the stall clock."""
        new_state, output = fold(self._state(event.recording_id), event, source, here)
        if output.changed or output.redelivered:
            # A redelivered record is written again too: a rocksdb store can hold a write
            # whose changelog record never got out before a kill.
            self.counts["redelivered" if output.redelivered else "folded"] += 1
            self.table[key] = new_state.to_json()
        else:
            self.counts["duplicates"] += 1
            return
        await self._publish(new_state, output, event.event_id)
        stalled = self.stalls.observe(
            here.partition,
            new_state,
            event.event_id,
            event.occurred_at,
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
        for kind, message in derived.fold_messages(state, output, event_id):
            await senders[kind].send(key=key, value=derived.encode(message))

    async def handle_fetch_request(
        self,
        fetcher: Fetcher,
        source: SourcePosition,
        key: bytes | None,
        value: bytes | None,
        now: float,
    ) -> None:
        """Download a finished recording's files; publish one message per file, or dead-letter."""
        try:
            request = orjson.loads(value or b"")
            recording_id = request["recording_id"]
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            await self.dead_letter(
                "fetch", f"unreadable fetch request: {exc!r}", source, key, value, {}
            )
            return
        try:
            downloaded = await fetcher.fetch(request, refetch=bool(request.get("refetch")))
        except FetchError as exc:
            await self.dead_letter("fetch", str(exc), source, key, value, {}, recording_id)
            return
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception as exc:
            log.exception("fetch failed for %s", recording_id)
            await self.dead_letter("fetch", repr(exc), source, key, value, {}, recording_id)
            return
        for item in downloaded:
            self.counts["downloaded"] += 1
            message = derived.download_message(request["provider"], recording_id, item, now)
            await self.downloads.send(key=recording_id.encode(), value=derived.encode(message))


def source_headers(record: Any) -> dict[str, bytes]:
    """Where a record came from, unless it already says (a forwarded record keeps its origin)."""
    headers = header_dict(record.headers)
    if all(name in headers for name in SOURCE_HEADERS):
        return {}
    return _source_headers(SourcePosition(record.topic, record.partition, record.offset))


def _source_headers(source: SourcePosition) -> dict[str, bytes]:
    values = (source.topic.encode(), b"%d" % source.partition, b"%d" % source.offset)
    return dict(zip(SOURCE_HEADERS, values, strict=True))


def _original_source(
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

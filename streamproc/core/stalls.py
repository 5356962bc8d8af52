"""Stalled recordings: ``starting`` or ``active`` with no event for ``after_s`` of event time.

Time here is event time, never the wall clock: each partition of the recordings table keeps
a clock, the newest event time read on the same partition of the raw topic (its watermark),
stored in the table under a key of its own, so a replay of the same log decides exactly as
the live worker did, and a worker that takes the partition over goes on from the same
watermark. Events that reach the partition through the re-keyed topic do not move it: when
they arrive depends on how the worker's partitions were read, not on the log.

Which recordings are open is not stored again: the states say it. An index in memory keeps
them in buckets by the time of their last event (``BUCKET_S`` wide, a timer wheel), built
from the table's states the first time a partition is seen (and again after it was
revoked); a bucket is checked once the watermark is ``after_s`` past its end, so a stall is
noticed within ``BUCKET_S`` of event time, and an event costs one small write (the clock)
however many recordings are open. A recording that moved on since it was bucketed (a newer
event, another status) is skipped: only its latest bucket can stall it.

A record handled again from the same log position (the worker died before its outputs were
sent and its offset committed) gets back the stalls it declared (``declared``); handling it
again changes nothing else, since every step is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamproc.core.events import RESERVED_KEY_PREFIX
from streamproc.core.fold import OPEN_STATUSES, FoldOutput, RecordingState, stall
from streamproc.kafka.partitions import partition_for

BUCKET_S = 300.0
DECLARED_KEPT = 20_000
"""How far back (in offsets) declarations are kept for re-sending: well past a commit."""

LoadState = Callable[[str], RecordingState | None]


@dataclass(frozen=True, slots=True)
class Stalled:
    state: RecordingState
    output: FoldOutput


def _bucket(state: RecordingState) -> int:
    return int(state.last_seen_at // BUCKET_S)


class StallClock:
    """The stall detector of one store (a Faust table, or a dict in a replay) that maps
    recording ids to states (``RecordingState.to_dict`` as JSON) over ``partitions``."""

    def __init__(
        self, store: MutableMapping[bytes, bytes], after_s: float, partitions: int
    ) -> None:
        self.store = store
        self.after_s = after_s
        self.partitions = partitions
        self.index: dict[int, dict[int, set[str]]] = {}
        """Partition -> bucket -> ids of recordings that were open with a last event in it."""

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker no longer owns: rebuild their index if they come back."""
        for partition in partitions:
            self.index.pop(partition, None)

    def observe(
        self,
        partition: int,
        state: RecordingState | None,
        event_id: str,
        event_time: float | None,
        load: LoadState,
        position: tuple[str, int] | None = None,
    ) -> list[Stalled]:
        """After event ``event_id`` was handled on ``partition``: bucket the recording it
        was folded into (``state``, if any) if it is open, advance the watermark to
        ``event_time`` (None for an event not read from the raw topic), and return the
        recordings that stalled (new states and outputs, caused by ``event_id``; the caller
        stores and sends them). ``position`` (``"topic:partition"``, offset) is the record
        handled, for a caller that can see it again, or None."""
        index = self._index(partition)
        clock = self._load_clock(partition)
        where = None if position is None else f"{position[0]}@{position[1]}"
        if where is not None and where in clock["declared"]:
            return self._declared_again(clock["declared"][where], load)
        if state is not None and state.status in OPEN_STATUSES:
            index.setdefault(_bucket(state), set()).add(state.recording_id)
        before = dict(clock)
        if event_time is not None:
            clock["watermark"] = max(clock["watermark"], event_time)
        stalled = self._expire(index, clock["watermark"], load, caused_by=event_id)
        if position is not None:
            declared = {
                at: ids
                for at, ids in clock["declared"].items()
                if _log(at) != position[0] or _offset(at) > position[1] - DECLARED_KEPT
            }
            if stalled:
                declared[f"{position[0]}@{position[1]}"] = [s.state.recording_id for s in stalled]
            clock["declared"] = declared
        if clock != before:
            self.store[_clock_key(partition)] = orjson.dumps(clock)
        return stalled

    def _index(self, partition: int) -> dict[int, set[str]]:
        """The partition's open recordings by bucket, built from the states on first use."""
        index = self.index.get(partition)
        if index is None:
            index = self.index[partition] = {}
            # Keys first, one value at a time: a replay's store holds every partition's
            # states, and a list of them all was a peak of ~1 KB per recording (600 MiB RSS
            # for a replay of 1M events).
            for key in self.store:
                if (
                    key.startswith(RESERVED_KEY_PREFIX)
                    or partition_for(key, self.partitions) != partition
                ):
                    continue
                value = self.store.get(key)
                if value is None:
                    continue
                state = RecordingState.from_json(value)
                if state.status in OPEN_STATUSES:
                    index.setdefault(_bucket(state), set()).add(state.recording_id)
        return index

    def _load_clock(self, partition: int) -> dict[str, Any]:
        stored = self.store.get(_clock_key(partition))
        if stored is None:
            return {"watermark": 0.0, "declared": {}}
        return orjson.loads(stored)

    def _expire(
        self, index: dict[int, set[str]], watermark: float, load: LoadState, caused_by: str
    ) -> list[Stalled]:
        """Every bucket whose end is ``after_s`` behind the watermark: its recordings that
        are still open and were last seen in it have stalled."""
        stalled: list[Stalled] = []
        for bucket in sorted(b for b in index if (b + 1) * BUCKET_S + self.after_s <= watermark):
            for recording_id in sorted(index.pop(bucket)):
                state = load(recording_id)
                if state is None or _bucket(state) != bucket:
                    continue
                new_state, output = stall(state, watermark, self.after_s, caused_by)
                if output.changed:
                    stalled.append(Stalled(new_state, output))
        return stalled

    def _declared_again(self, recording_ids: list[str], load: LoadState) -> list[Stalled]:
        """A redelivered record: the stalls it declared, to be sent again (nothing is
        stored again: the states already say stalled)."""
        again = []
        for recording_id in recording_ids:
            state = load(recording_id)
            if state is None:
                continue
            transitions = tuple(t for t in state.transitions if t.to_status == "stalled")
            output = FoldOutput(changed=False, transitions=transitions, redelivered=True)
            again.append(Stalled(state, output))
        return again


def _clock_key(partition: int) -> bytes:
    return RESERVED_KEY_PREFIX + b"stalls:%d" % partition


def _log(position: str) -> str:
    return position.rpartition("@")[0]


def _offset(position: str) -> int:
    return int(position.rpartition("@")[2])

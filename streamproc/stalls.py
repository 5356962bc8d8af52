"""Stalled recordings: ``starting`` or ``active`` with no event for ``after_s`` of event time.

Time here is event time, never the wall clock: each partition of the recordings table keeps
a clock, the newest event time folded on it (its watermark), so a replay of the same log
decides exactly as the live worker did. Open recordings sit in buckets by the time of their
last event (``BUCKET_S`` wide, a timer wheel kept in the same store as the states, one key
per bucket and one per partition); a bucket is checked once the watermark is ``after_s``
past its end, so a stall is noticed within ``BUCKET_S`` of event time and each event costs
two small writes however many recordings are open.

A recording that moved on since it was bucketed (a newer event, a terminal status) is
skipped: only its latest bucket can stall it. The store holds the recordings' states too,
under their recording ids; the clock's keys begin with NUL, which no id may (``decode``).

A record handled again from the same log position (the worker died before its outputs were
sent and its offset committed) gets back the stalls it declared, from ``declared``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamproc.fold import OPEN_STATUSES, FoldOutput, RecordingState, stall

BUCKET_S = 300.0
DECLARED_KEPT = 20_000
"""How far back (in offsets) declarations are kept for re-sending: well past a commit."""

LoadState = Callable[[str], RecordingState | None]


@dataclass(frozen=True, slots=True)
class Stalled:
    state: RecordingState
    output: FoldOutput


class StallClock:
    """The stall detector of one store; ``store`` maps bytes to bytes (a Faust table)."""

    def __init__(self, store: MutableMapping[bytes, bytes], after_s: float) -> None:
        self.store = store
        self.after_s = after_s

    def observe(
        self,
        partition: int,
        state: RecordingState,
        event_id: str,
        event_time: float,
        load: LoadState,
        position: tuple[str, int] | None = None,
    ) -> list[Stalled]:
        """After event ``event_id`` was folded into ``state`` on ``partition``: bucket the
        recording if it is open, advance the watermark, and return the recordings that
        stalled (new states and outputs, caused by ``event_id``; the caller stores and sends
        them). ``position`` (``"topic:partition"``, offset) is the record handled, for a
        worker that can see it again; a replay, which cannot, passes None."""
        clock = self._load_clock(partition)
        where = None
        if position is not None:
            log, offset = position
            if offset <= clock["last"].get(log, -1):
                return self._declared_again(clock, f"{log}@{offset}", load)
            clock["last"][log] = offset
            where = f"{log}@{offset}"
        if state.status in OPEN_STATUSES:
            self._bucket(partition, clock, state)
        clock["watermark"] = max(clock["watermark"], event_time)
        stalled = self._expire(partition, clock, load, caused_by=event_id)
        if stalled and where is not None:
            clock["declared"][where] = [item.state.recording_id for item in stalled]
        clock["declared"] = {
            where: ids
            for where, ids in clock["declared"].items()
            if _offset(where) > clock["last"].get(_log(where), -1) - DECLARED_KEPT
        }
        self.store[_clock_key(partition)] = orjson.dumps(clock)
        return stalled

    def _load_clock(self, partition: int) -> dict[str, Any]:
        stored = self.store.get(_clock_key(partition))
        if stored is None:
            return {"watermark": 0.0, "buckets": [], "last": {}, "declared": {}}
        return orjson.loads(stored)

    def _bucket(self, partition: int, clock: dict[str, Any], state: RecordingState) -> None:
        bucket = int(state.last_seen_at // BUCKET_S)
        key = _bucket_key(partition, bucket)
        members = set(orjson.loads(self.store.get(key) or b"[]"))
        if state.recording_id in members:
            return
        members.add(state.recording_id)
        self.store[key] = orjson.dumps(sorted(members))
        if bucket not in clock["buckets"]:
            clock["buckets"] = sorted([*clock["buckets"], bucket])

    def _expire(
        self, partition: int, clock: dict[str, Any], load: LoadState, caused_by: str
    ) -> list[Stalled]:
        """Every bucket whose end is ``after_s`` behind the watermark: its recordings that
        are still open and were last seen in it have stalled."""
        stalled: list[Stalled] = []
        while clock["buckets"] and self._due(clock["buckets"][0], clock["watermark"]):
            bucket = clock["buckets"].pop(0)
            key = _bucket_key(partition, bucket)
            for recording_id in orjson.loads(self.store.get(key) or b"[]"):
                state = load(recording_id)
                if state is None or int(state.last_seen_at // BUCKET_S) != bucket:
                    continue
                new_state, output = stall(state, clock["watermark"], self.after_s, caused_by)
                if output.changed:
                    stalled.append(Stalled(new_state, output))
            del self.store[key]
        return stalled

    def _due(self, bucket: int, watermark: float) -> bool:
        return (bucket + 1) * BUCKET_S + self.after_s <= watermark

    def _declared_again(
        self, clock: dict[str, Any], position: str, load: LoadState
    ) -> list[Stalled]:
        """A redelivered record: the stalls it declared, to be sent again (nothing is
        stored again: the states already say stalled)."""
        again = []
        for recording_id in clock["declared"].get(position, []):
            state = load(recording_id)
            if state is None:
                continue
            transitions = tuple(t for t in state.transitions if t.to_status == "stalled")
            output = FoldOutput(changed=False, transitions=transitions, redelivered=True)
            again.append(Stalled(state, output))
        return again


def _clock_key(partition: int) -> bytes:
    return b"\x00stalls:%d" % partition


def _bucket_key(partition: int, bucket: int) -> bytes:
    return b"\x00stalls:%d:%d" % (partition, bucket)


def _log(position: str) -> str:
    return position.rpartition("@")[0]


def _offset(position: str) -> int:
    return int(position.rpartition("@")[2])

"""State = fold(log): the per-recording state machine, in plain Python with no I/O.

``fold(state, event)`` returns the new state and what to emit. It is built so that any
order and any duplication of one recording's events reach the same final state:

- an event id already applied changes nothing (idempotent);
- the status only moves up ``starting < active < stalled < ending < failed < finished``.
  ``stalled`` comes from no event: ``stall`` sets it when event time has moved on too far
  without one (``stalls.py``); a later ending, failed or finished event moves it on. Terminal
  states absorb everything before them; ``finished`` outranks ``failed`` because Daily may
  report an error and still deliver a downloadable file, and the file is the stronger fact;
- every other field keeps the value of the highest-precedence event that carried one
  (precedence = status rank, then event time, then event id), and times take min/max.
  Each of these merges is commutative, which is what the property tests check.

Each status is entered at most once, so a transition is identified by recording + target
status alone: the id of ``recording.completed`` is the same however often it is replayed.

A record re-delivered from the log position it was already applied at (a worker died after
writing the table's changelog but before its other outputs were sent) emits again the
transitions and fetch request it caused, since nothing says those were sent; a duplicate
event at a new position (a provider retry) emits nothing. "Position" is where the worker
read the record (``handled``), not where it first entered the log (``offsets``, provenance):
an event the instance join releases late sits later in the re-keyed topic than newer raw
records, and must not pass for a redelivery of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from streamproc.core.events import RecordingEvent, Track, flat_dict, tracks_as_dicts

STATUS_RANK: dict[str, float] = {
    "starting": 0,
    "active": 1,
    "stalled": 1.5,
    "ending": 2,
    "failed": 3,
    "finished": 4,
}
"""``stalled`` sits between two event statuses so that stored precedences keep their meaning."""
OPEN_STATUSES = frozenset({"starting", "active"})
"""A recording in these can stall."""
TRANSITION_TYPES: dict[str, str] = {
    "starting": "recording.starting",
    "active": "recording.active",
    "stalled": "recording.stalled",
    "ending": "recording.ending",
    "failed": "recording.failed",
    "finished": "recording.completed",
}
MERGED_FIELDS = (
    "room",
    "reported_duration_s",
    "participants",
    "recording_type",
    "s3_key",
    "tracks",
    "filename",
    "error",
)
Precedence = tuple[float, float, str]


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where in the log an event came from (for provenance and dead letters)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class RecordingState:
    recording_id: str
    provider: str
    status: str
    first_seen_at: float
    last_seen_at: float
    started_at: float | None = None
    finished_at: float | None = None
    room: str | None = None
    reported_duration_s: float | None = None
    participants: int | None = None
    recording_type: str | None = None
    s3_key: str | None = None
    tracks: tuple[Track, ...] | None = None
    filename: str | None = None
    error: str | None = None
    event_ids: frozenset[str] = frozenset()
    offsets: Mapping[str, int] = field(default_factory=dict)
    """Highest applied offset per ``topic:partition``: provenance, not part of the fold logic."""
    handled: Mapping[str, int] = field(default_factory=dict)
    """Highest offset per ``topic:partition`` the worker read an applied event at (redelivery)."""
    precedence: Mapping[str, Precedence] = field(default_factory=dict)
    transitions: tuple[Transition, ...] = ()
    """What this recording has emitted, so a re-delivered record can emit it again."""

    @property
    def duration_s(self) -> float | None:
        """The provider's duration, else finish minus start when both are known."""
        if self.reported_duration_s is not None:
            return self.reported_duration_s
        if self.started_at is not None and self.finished_at is not None:
            return max(0.0, self.finished_at - self.started_at)
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, for the table (round-trips through ``from_dict``)."""
        return {
            "recording_id": self.recording_id,
            "provider": self.provider,
            "status": self.status,
            "first_seen_at": self.first_seen_at,
            "last_seen_at": self.last_seen_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "room": self.room,
            "reported_duration_s": self.reported_duration_s,
            "participants": self.participants,
            "recording_type": self.recording_type,
            "s3_key": self.s3_key,
            "tracks": tracks_as_dicts(self.tracks),
            "filename": self.filename,
            "error": self.error,
            "event_ids": sorted(self.event_ids),
            "offsets": dict(self.offsets),
            "handled": dict(self.handled),
            "precedence": {name: list(value) for name, value in self.precedence.items()},
            "transitions": [flat_dict(transition) for transition in self.transitions],
        }

    def to_json(self) -> bytes:
        """The stored form (the worker's table, a replay's store), copied to its own size:
        orjson 3.13 hands back a 1.3 KB state inside a 16 KB allocation, which a table that
        keeps its values in memory (Faust's ``memory://``, the replay's cache) keeps whole
        (13x the memory; docs/notes/performance-history.md, 2026-12-05)."""
        return bytes(memoryview(orjson.dumps(self.to_dict())))

    @classmethod
    def from_json(cls, stored: bytes) -> RecordingState:
        return cls.from_dict(orjson.loads(stored))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordingState:
        tracks = data.get("tracks")
        return cls(
            **{name: data.get(name) for name in _PLAIN_FIELDS},
            tracks=None if tracks is None else tuple(Track(**track) for track in tracks),
            event_ids=frozenset(data.get("event_ids", ())),
            offsets=dict(data.get("offsets", {})),
            handled=dict(data.get("handled", {})),
            precedence={name: tuple(value) for name, value in data.get("precedence", {}).items()},
            transitions=tuple(Transition(**t) for t in data.get("transitions", ())),
        )


_PLAIN_FIELDS = tuple(
    name
    for name in RecordingState.__dataclass_fields__
    if name not in ("tracks", "event_ids", "offsets", "handled", "precedence", "transitions")
)


@dataclass(frozen=True, slots=True)
class Transition:
    """The recording entered a new status: one lifecycle message."""

    recording_id: str
    provider: str
    from_status: str | None
    to_status: str
    caused_by: str
    occurred_at: float
    error: str | None = None
    """For ``failed``: the message of the error event that caused it."""

    @property
    def type(self) -> str:
        return TRANSITION_TYPES[self.to_status]


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """The recording reached ``finished`` for the first time: download its files."""

    recording_id: str
    provider: str
    room: str | None
    s3_key: str | None
    tracks: tuple[Track, ...] | None
    filename: str | None
    recording_type: str | None


@dataclass(frozen=True, slots=True)
class FoldOutput:
    changed: bool
    transitions: tuple[Transition, ...] = ()
    fetch: FetchRequest | None = None
    redelivered: bool = False
    """The record was applied before at this very log position: outputs are sent again."""


UNCHANGED = FoldOutput(changed=False)


def _precedence(event: RecordingEvent) -> Precedence:
    return (STATUS_RANK[event.status], event.occurred_at, event.event_id)


def _candidate_start(event: RecordingEvent) -> float | None:
    if event.started_at is not None:
        return float(event.started_at)
    return event.occurred_at if event.status in ("starting", "active") else None


def _min(current: float | None, candidate: float | None) -> float | None:
    if current is None:
        return candidate
    return current if candidate is None else min(current, candidate)


def _event_values(event: RecordingEvent) -> dict[str, Any]:
    return {
        "room": event.room,
        "reported_duration_s": event.duration_s,
        "participants": event.participants,
        "recording_type": event.recording_type,
        "s3_key": event.s3_key,
        "tracks": event.tracks,
        "filename": event.filename,
        "error": event.error,
    }


def _merge_fields(state: RecordingState, event: RecordingEvent) -> dict[str, Any]:
    """Each field takes the value of the highest-precedence event that carried one."""
    precedence = dict(state.precedence)
    updates: dict[str, Any] = {}
    rank = _precedence(event)
    for name, value in _event_values(event).items():
        if value is not None and (name not in precedence or rank > precedence[name]):
            updates[name] = value
            precedence[name] = rank
    updates["precedence"] = precedence
    return updates


def _empty_state(event: RecordingEvent) -> RecordingState:
    return RecordingState(
        recording_id=event.recording_id,
        provider=event.provider,
        status=event.status,
        first_seen_at=event.occurred_at,
        last_seen_at=event.occurred_at,
    )


def fold(
    state: RecordingState | None,
    event: RecordingEvent,
    source: SourcePosition | None = None,
    read_at: SourcePosition | None = None,
) -> tuple[RecordingState, FoldOutput]:
    """Apply one canonical event to a recording's state (``None`` for a new recording).

    ``source``: where the event entered the log (provenance); ``read_at``: where the worker
    read it, which detects a redelivery (a replay, reading each record once, passes None).
    """
    if state is not None and event.event_id in state.event_ids:
        if read_at is not None and _handled_at(state, read_at):
            return state, _outputs_caused_by(state, event.event_id)
        return state, UNCHANGED
    previous_status = None if state is None else state.status
    base = _empty_state(event) if state is None else state
    status = base.status
    if STATUS_RANK[event.status] > STATUS_RANK[status]:
        status = event.status
    transition = None
    if status != previous_status:
        transition = Transition(
            recording_id=event.recording_id,
            provider=base.provider,
            from_status=previous_status,
            to_status=status,
            caused_by=event.event_id,
            occurred_at=event.occurred_at,
            error=event.error if status == "failed" else None,
        )
    new_state = replace(
        base,
        status=status,
        first_seen_at=min(base.first_seen_at, event.occurred_at),
        last_seen_at=max(base.last_seen_at, event.occurred_at),
        started_at=_min(base.started_at, _candidate_start(event)),
        finished_at=_min(
            base.finished_at, event.occurred_at if event.status == "finished" else None
        ),
        event_ids=base.event_ids | {event.event_id},
        offsets=_advanced(base.offsets, source),
        handled=_advanced(base.handled, read_at),
        transitions=base.transitions if transition is None else (*base.transitions, transition),
        **_merge_fields(base, event),
    )
    if transition is None:
        return new_state, FoldOutput(changed=True)
    fetch = _fetch_request(new_state) if status == "finished" else None
    return new_state, FoldOutput(changed=True, transitions=(transition,), fetch=fetch)


def stall(
    state: RecordingState, watermark: float, after_s: float, caused_by: str
) -> tuple[RecordingState, FoldOutput]:
    """The recording is ``stalled`` if it is still open and event time (``watermark``, the
    newest event time on its partition) is ``after_s`` past its last event. The transition
    happens at that point in event time; ``caused_by`` is the event that showed it."""
    if state.status not in OPEN_STATUSES or watermark - state.last_seen_at < after_s:
        return state, UNCHANGED
    transition = Transition(
        recording_id=state.recording_id,
        provider=state.provider,
        from_status=state.status,
        to_status="stalled",
        caused_by=caused_by,
        occurred_at=state.last_seen_at + after_s,
    )
    new_state = replace(state, status="stalled", transitions=(*state.transitions, transition))
    return new_state, FoldOutput(changed=True, transitions=(transition,))


def _fetch_request(state: RecordingState) -> FetchRequest:
    return FetchRequest(
        recording_id=state.recording_id,
        provider=state.provider,
        room=state.room,
        s3_key=state.s3_key,
        tracks=state.tracks,
        filename=state.filename,
        recording_type=state.recording_type,
    )


def _advanced(offsets: Mapping[str, int], position: SourcePosition | None) -> Mapping[str, int]:
    if position is None:
        return offsets
    name = f"{position.topic}:{position.partition}"
    return {**offsets, name: max(offsets.get(name, -1), position.offset)}


def _handled_at(state: RecordingState, read_at: SourcePosition) -> bool:
    """True if the worker read this position, or a later one of its partition, before."""
    return read_at.offset <= state.handled.get(f"{read_at.topic}:{read_at.partition}", -1)


def _outputs_caused_by(state: RecordingState, event_id: str) -> FoldOutput:
    caused = tuple(t for t in state.transitions if t.caused_by == event_id)
    finished = any(t.to_status == "finished" for t in caused)
    return FoldOutput(
        changed=False,
        transitions=caused,
        fetch=_fetch_request(state) if finished else None,
        redelivered=True,
    )

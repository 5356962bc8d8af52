"""Stalled recordings (``stalls.py``): event time decides, a later event moves one on, and
the timer wheel declares exactly what a plain scan over every state would."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core.events import RecordingEvent
from streamproc.core.fold import OPEN_STATUSES, RecordingState, SourcePosition, fold, stall
from streamproc.core.stalls import BUCKET_S, StallClock

AFTER = 6 * 3600.0
T0 = 1_700_000_000.0


def event(recording: str, status: str, at: float, event_id: str | None = None) -> RecordingEvent:
    return RecordingEvent(
        provider="daily",
        event_id=event_id or f"{recording}-{status}-{at}",
        event_type=f"test.{status}",
        recording_id=recording,
        status=status,
        occurred_at=at,
    )


class Partition:
    """One partition of the worker's table, folded the way the pipeline folds it."""

    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}
        self.states: dict[str, RecordingState] = {}
        self.clock = StallClock(self.store, AFTER, 1)
        self.sent: list[tuple[str, str]] = []
        self.offset = 0

    def handle(self, item: RecordingEvent, offset: int | None = None) -> list:
        if offset is None:
            offset, self.offset = self.offset, self.offset + 1
        source = SourcePosition("raw", 0, offset)
        state, output = fold(self.states.get(item.recording_id), item, source, source)
        if not (output.changed or output.redelivered):
            return []
        self.states[item.recording_id] = state
        self.sent += [(t.recording_id, t.to_status) for t in output.transitions]
        stalled = self.clock.observe(
            0, state, item.event_id, item.occurred_at, self.states.get, ("raw:0", offset)
        )
        for found in stalled:
            if found.output.changed:
                self.states[found.state.recording_id] = found.state
            self.sent += [(t.recording_id, t.to_status) for t in found.output.transitions]
        return stalled


def test_an_active_recording_stalls_when_event_time_passes_it_by():
    partition = Partition()
    partition.handle(event("a", "active", T0))
    partition.handle(event("b", "active", T0 + AFTER - 1))
    assert partition.states["a"].status == "active"  # not yet: AFTER has not passed
    partition.handle(event("b", "active", T0 + AFTER + BUCKET_S, "b-later"))
    a = partition.states["a"]
    assert a.status == "stalled"
    [transition] = [t for t in a.transitions if t.to_status == "stalled"]
    assert (transition.from_status, transition.occurred_at) == ("active", T0 + AFTER)
    assert transition.caused_by == "b-later" and transition.type == "recording.stalled"
    assert partition.states["b"].status == "active"


def test_a_later_event_still_moves_a_stalled_recording_on():
    partition = Partition()
    partition.handle(event("a", "active", T0))
    partition.handle(event("b", "active", T0 + AFTER + BUCKET_S))
    partition.handle(event("a", "finished", T0 + AFTER + 2 * BUCKET_S))
    assert partition.states["a"].status == "finished"
    assert partition.sent == [
        ("a", "active"),
        ("b", "active"),
        ("a", "stalled"),
        ("a", "finished"),
    ]
    assert partition.states["a"].transitions[-1].from_status == "stalled"


def test_an_event_before_the_deadline_keeps_it_from_stalling():
    partition = Partition()
    partition.handle(event("a", "active", T0))
    partition.handle(event("a", "ending", T0 + AFTER - 10))
    partition.handle(event("b", "active", T0 + 3 * AFTER))
    assert partition.states["a"].status == "ending"
    partition.handle(event("c", "active", T0 + AFTER - 10))  # a late arrival, already overdue
    partition.handle(event("b", "active", T0 + 3 * AFTER + 1, "b-2"))
    assert partition.states["c"].status == "stalled"


def test_a_stall_is_not_an_event_a_fold_of_the_same_events_can_undo():
    state, _ = fold(None, event("a", "active", T0))
    stalled, output = stall(state, T0 + AFTER, AFTER, "x")
    assert stalled.status == "stalled" and output.changed
    again, output = fold(stalled, event("a", "active", T0 + 1, "a-dup"))
    assert again.status == "stalled" and output.transitions == ()
    unchanged, output = stall(again, T0 + 10 * AFTER, AFTER, "y")
    assert not output.changed and unchanged is again


def test_a_redelivered_record_declares_its_stalls_again_and_changes_nothing():
    partition = Partition()
    partition.handle(event("a", "active", T0), offset=0)
    first = partition.handle(event("b", "active", T0 + AFTER + BUCKET_S), offset=1)
    stored = dict(partition.store)
    again = partition.handle(event("b", "active", T0 + AFTER + BUCKET_S, "b-retry"), offset=1)
    assert [s.state.recording_id for s in first] == ["a"]
    assert [(s.state.recording_id, s.output.redelivered) for s in again] == [("a", True)]
    assert again[0].output.transitions == first[0].output.transitions
    assert partition.store == stored


def reference(events: list[RecordingEvent]) -> dict[str, str]:
    """The specification, by brute force: after each fold, every open recording whose last
    event's bucket ended ``AFTER`` before the newest event time is stalled."""
    states: dict[str, RecordingState] = {}
    watermark = 0.0
    for item in events:
        state, output = fold(states.get(item.recording_id), item)
        if not output.changed:
            continue
        states[item.recording_id] = state
        watermark = max(watermark, item.occurred_at)
        for recording_id, candidate in list(states.items()):
            bucket_end = (candidate.last_seen_at // BUCKET_S + 1) * BUCKET_S
            if candidate.status in OPEN_STATUSES and bucket_end + AFTER <= watermark:
                states[recording_id], _ = stall(candidate, watermark, AFTER, item.event_id)
    return {recording_id: state.status for recording_id, state in states.items()}


# Event times cluster around multiples of AFTER / 2, a third of a bucket apart, so that
# deadlines and bucket edges are often hit exactly.
events = st.lists(
    st.builds(
        event,
        recording=st.sampled_from(["a", "b", "c", "d"]),
        status=st.sampled_from(["starting", "active", "ending", "finished", "failed"]),
        at=st.builds(
            lambda half_afters, steps: T0 + half_afters * AFTER / 2 + steps * BUCKET_S / 3,
            st.integers(0, 8),
            st.integers(0, 7),
        ),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_the_timer_wheel_declares_what_a_full_scan_would(items):
    partition = Partition()
    for item in items:
        partition.handle(item)
    assert {k: v.status for k, v in partition.states.items()} == reference(items)


@settings(max_examples=300, deadline=None)
@given(events)
def test_each_transition_is_published_at_most_once(items):
    partition = Partition()
    for item in items + items:  # every event again, as a provider retry would
        partition.handle(item)
    assert len(partition.sent) == len(set(partition.sent))


@settings(max_examples=200, deadline=None)
@given(events, st.integers(min_value=0, max_value=40))
def test_a_crash_and_redelivery_resends_what_was_declared_and_changes_no_state(items, cut):
    """Records from ``cut`` on are handled, then handled again at the same offsets (the
    worker died before committing them): the states stay as they were, and every stall
    those records declared is declared again."""
    partition = Partition()
    declared: list[tuple[str, tuple]] = []
    for offset, item in enumerate(items):
        for found in partition.handle(item, offset):
            if offset >= cut:
                declared.append((found.state.recording_id, found.output.transitions))
    states = dict(partition.states)
    again = []
    for offset, item in list(enumerate(items))[cut:]:
        for found in partition.handle(item, offset):
            again.append((found.state.recording_id, found.output.transitions))
    assert partition.states == states
    assert again == declared


def test_a_new_worker_rebuilds_the_open_recordings_from_the_states_and_goes_on():
    """The index of open recordings is memory; the states and the clock are the table. A
    worker that takes the partition over (or restarts) finds the same stalls."""
    partition = Partition()
    partition.handle(event("a", "active", T0))
    partition.handle(event("b", "finished", T0))
    store = dict(partition.store)
    store.update({rid.encode(): orjson.dumps(s.to_dict()) for rid, s in partition.states.items()})

    def load(recording_id: str) -> RecordingState | None:
        stored = store.get(recording_id.encode())
        return None if stored is None else RecordingState.from_dict(orjson.loads(stored))

    taken_over = StallClock(store, AFTER, 1)
    later, _ = fold(None, event("c", "active", T0 + AFTER + BUCKET_S))
    stalled = taken_over.observe(0, later, "c-1", later.last_seen_at, load, ("raw:0", 5))
    assert [s.state.recording_id for s in stalled] == ["a"]
    taken_over.forget([0])
    assert taken_over.index == {}

"""The fold: idempotent, monotonic, and order-independent (property tests)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core.events import RecordingEvent, Track
from streamproc.core.fold import RecordingState, SourcePosition, fold

STATUSES = ["starting", "active", "ending", "finished", "failed"]


def event(event_id: str, status: str, at: float, **fields) -> RecordingEvent:
    return RecordingEvent(
        provider="daily",
        event_id=event_id,
        event_type=f"test.{status}",
        recording_id="rec-1",
        status=status,
        occurred_at=at,
        **fields,
    )


def fold_all(events, state=None):
    outputs = []
    for item in events:
        state, output = fold(state, item)
        outputs.append(output)
    return state, outputs


def transitions(outputs):
    return [t.type for output in outputs for t in output.transitions]


def test_in_order_lifecycle_emits_each_transition_and_one_fetch():
    state, outputs = fold_all(
        [
            event("e1", "starting", 10),
            event("e2", "active", 12, started_at=11),
            event("e3", "finished", 100, s3_key="bucket/key", duration_s=89.0),
        ]
    )
    assert state.status == "finished"
    assert state.started_at == 10
    assert state.finished_at == 100
    assert state.duration_s == 89.0
    assert transitions(outputs) == ["recording.starting", "recording.active", "recording.completed"]
    fetches = [o.fetch for o in outputs if o.fetch]
    assert len(fetches) == 1 and fetches[0].s3_key == "bucket/key"


def test_late_started_does_not_undo_finished_but_fills_the_start_time():
    state, outputs = fold_all(
        [event("done", "finished", 100, s3_key="k"), event("start", "active", 5, started_at=4)]
    )
    assert state.status == "finished"
    assert state.started_at == 4
    assert state.duration_s == 96
    assert outputs[1].changed and outputs[1].transitions == () and outputs[1].fetch is None


def test_the_same_event_twice_changes_nothing():
    first = event("e1", "finished", 100, s3_key="k")
    state, _ = fold(None, first)
    again, output = fold(state, first)
    assert again is state
    assert not output.changed and output.fetch is None


def test_finished_outranks_failed_and_failed_never_follows_finished():
    failed, finished = event("err", "failed", 50, error="boom"), event("ok", "finished", 60)
    _, failed_first = fold_all([failed, finished])
    assert transitions(failed_first) == ["recording.failed", "recording.completed"]
    state, finished_first = fold_all([finished, failed])
    assert transitions(finished_first) == ["recording.completed"]
    assert state.status == "finished"
    assert state.error == "boom"  # kept: the finished event carried no error to replace it


def test_a_record_redelivered_from_its_position_emits_its_outputs_again():
    started = event("start", "active", 1)
    finished = event("done", "finished", 9, s3_key="k")
    at = [SourcePosition("raw", 0, offset) for offset in (10, 11)]
    state, _ = fold(None, started, at[0], at[0])
    state, first = fold(state, finished, at[1], at[1])
    again, redelivered = fold(state, finished, at[1], at[1])
    assert again is state and redelivered.redelivered and not redelivered.changed
    assert redelivered.transitions == first.transitions
    assert redelivered.fetch == first.fetch
    _, retried = fold(state, finished, SourcePosition("raw", 0, 12))  # provider retry
    assert retried.transitions == () and retried.fetch is None and not retried.redelivered
    # The same event again from an older raw position, read at a new place (the instance join
    # releases events late, through the re-keyed topic): a duplicate, not a redelivery.
    _, late = fold(state, finished, SourcePosition("raw", 0, 5), SourcePosition("rekeyed", 0, 3))
    assert late.transitions == () and not late.redelivered


def test_source_offsets_are_recorded_per_partition():
    position = SourcePosition("recordings.raw", 2, 41)
    state, _ = fold(None, event("e1", "active", 1), position)
    state, _ = fold(state, event("e2", "ending", 2), SourcePosition("recordings.raw", 2, 40))
    assert state.offsets == {"recordings.raw:2": 41}


def test_state_round_trips_through_plain_data():
    state, _ = fold_all(
        [
            event("e1", "active", 1, room="r", participants=3),
            event("e2", "finished", 9, tracks=(Track("a", 1, "video"), Track("b", None, None))),
        ]
    )
    assert RecordingState.from_dict(state.to_dict()) == state


event_fields = st.fixed_dictionaries(
    {},
    optional={
        "room": st.sampled_from(["room-a", "room-b"]),
        "started_at": st.floats(0, 1000),
        "duration_s": st.floats(0, 1000),
        "participants": st.integers(0, 20),
        "s3_key": st.sampled_from(["k1", "k2"]),
        "tracks": st.lists(
            st.builds(Track, st.sampled_from(["t1", "t2"]), st.none() | st.integers(0, 9)),
            max_size=2,
        ).map(tuple),
        "error": st.sampled_from(["e1", "e2"]),
    },
)


@st.composite
def recording_history(draw):
    """Distinct events of one recording, then a delivery: shuffled, with duplicates."""
    count = draw(st.integers(1, 8))
    events = [
        event(
            f"ev-{index}",
            draw(st.sampled_from(STATUSES)),
            draw(st.floats(0, 1000, allow_nan=False)),
            **draw(event_fields),
        )
        for index in range(count)
    ]
    duplicates = draw(st.lists(st.sampled_from(events), max_size=6))
    delivery = draw(st.permutations(events + duplicates))
    return events, delivery


def _comparable(state: RecordingState) -> RecordingState:
    """Provenance (offsets, the emitted transitions' from-status) depends on delivery order."""
    return dataclasses.replace(state, offsets={}, transitions=())


@settings(max_examples=300, deadline=None)
@given(recording_history())
def test_any_interleaving_and_duplication_converges_to_the_same_state(history):
    events, delivery = history
    reference, _ = fold_all(events)
    final, outputs = fold_all(delivery)
    assert _comparable(final) == _comparable(reference)
    completed = transitions(outputs).count("recording.completed")
    reached_finished = any(e.status == "finished" for e in events)
    assert completed == (1 if reached_finished else 0)
    assert sum(1 for o in outputs if o.fetch) == completed


@settings(max_examples=200, deadline=None)
@given(recording_history())
def test_status_never_moves_back(history):
    _, delivery = history
    rank = {"starting": 0, "active": 1, "ending": 2, "failed": 3, "finished": 4}
    state, seen = None, []
    for item in delivery:
        state, _ = fold(state, item)
        seen.append(rank[state.status])
    assert seen == sorted(seen)
    emitted = transitions(fold_all(delivery)[1])
    assert len(emitted) == len(set(emitted)), "a status was entered twice"

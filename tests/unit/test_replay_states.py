"""The replay's state store behaves as a dict of states whatever its cache holds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core.events import RecordingEvent
from streamproc.core.fold import RecordingState, SourcePosition, fold
from streamproc.replay.states import ReplayStates

IDS = st.sampled_from([f"rec-{n}" for n in range(12)])
STATUSES = st.sampled_from(["starting", "active", "ending", "finished", "failed"])


def folded(recording_id: str, status: str, step: int) -> RecordingState:
    """A real state with nested fields (event ids, offsets, transitions) to round-trip."""
    event = RecordingEvent(
        provider="daily",
        event_id=f"{recording_id}-{step}",
        event_type=f"test.{status}",
        recording_id=recording_id,
        status=status,
        occurred_at=1_700_000_000.0 + step,
        room="room",
    )
    state, _ = fold(None, event, SourcePosition("raw", 0, step))
    return state


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=4),
    st.lists(st.tuples(st.sampled_from(["set", "get", "del"]), IDS, STATUSES), max_size=60),
)
def test_the_store_answers_as_a_dict_does(cached, operations):
    store, model = ReplayStates(cached=cached), {}
    try:
        for step, (operation, recording_id, status) in enumerate(operations):
            if operation == "set":
                store[recording_id] = model[recording_id] = folded(recording_id, status, step)
            elif operation == "get":
                assert store.get(recording_id) == model.get(recording_id)
            elif recording_id in model:
                del store[recording_id], model[recording_id]
            assert len(store) == len(model)
        assert list(store) == sorted(model)
        assert dict(store.items()) == model
    finally:
        store.close()


def test_states_evicted_from_memory_come_back_equal():
    store = ReplayStates(cached=2)
    try:
        states = [folded(f"rec-{n}", "active", n) for n in range(5)]
        for state in states:
            store[state.recording_id] = state
        assert len(store._recent) == 2
        assert [store[state.recording_id] for state in states] == states
    finally:
        store.close()

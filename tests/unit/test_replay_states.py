"""The replay's state store behaves as a dict of states whatever its cache holds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core.events import RecordingEvent
from streamproc.core.fold import RecordingState, SourcePosition, fold
from streamproc.replay.states import ReplayStates, ReplayStore

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
    store, model = ReplayStore(cached=cached), {}
    try:
        for step, (operation, recording_id, status) in enumerate(operations):
            key = recording_id.encode()
            if operation == "set":
                store[key] = model[key] = folded(recording_id, status, step).to_json()
            elif operation == "get":
                assert store.get(key) == model.get(key)
            elif key in model:
                del store[key], model[key]
            assert len(store) == len(model)
        assert list(store) == sorted(model)
        assert dict(store.items()) == model
    finally:
        store.close()


def test_states_evicted_from_memory_come_back_equal():
    states = ReplayStates(ReplayStore(cached=2))
    try:
        folded_states = [folded(f"rec-{n}", "active", n) for n in range(5)]
        for state in folded_states:
            states.store[state.recording_id.encode()] = state.to_json()
        states.store[b"\x00stalls:0"] = b"{}"  # the table's own keys are not states
        assert len(states.store._recent) == 2
        assert [states[state.recording_id] for state in folded_states] == folded_states
        assert list(states) == [state.recording_id for state in folded_states]
    finally:
        states.close()

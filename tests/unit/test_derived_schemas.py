"""Derived messages agree with the JSON Schemas consumers read (schemas/derived/)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core import derived, schemas
from streamproc.core.events import RecordingEvent, Track
from streamproc.core.fold import SourcePosition, fold

STATUSES = ["starting", "active", "ending", "finished", "failed"]

events = st.builds(
    RecordingEvent,
    provider=st.sampled_from(["daily", "openvidu"]),
    event_id=st.text(min_size=1, max_size=10),
    event_type=st.just("t"),
    recording_id=st.just("rec"),
    status=st.sampled_from(STATUSES),
    occurred_at=st.floats(0, 2e9),
    room=st.none() | st.text(max_size=5),
    started_at=st.none() | st.floats(0, 2e9),
    duration_s=st.none() | st.floats(0, 1e5),
    participants=st.none() | st.integers(0, 100),
    s3_key=st.none() | st.text(min_size=1, max_size=10),
    tracks=st.none()
    | st.lists(st.builds(Track, st.text(min_size=1, max_size=5)), max_size=2).map(tuple),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(events, min_size=1, max_size=5))
def test_state_lifecycle_and_fetch_messages_match_their_schemas(history):
    state = None
    for index, event in enumerate(history):
        state, output = fold(state, event, SourcePosition("raw", 0, index))
        if not output.changed:
            continue
        message = derived.state_message(state, event.event_id)
        assert schemas.first_error("derived/state.json", message) is None
        for transition in output.transitions:
            message = derived.lifecycle_message(transition)
            assert schemas.first_error("derived/lifecycle.json", message) is None
        if output.fetch:
            message = derived.fetch_request_message(output.fetch)
            assert schemas.first_error("derived/fetch-request.json", message) is None


def test_download_and_dead_letter_messages_match_their_schemas():
    item = derived.DownloadedObject("bucket", "a/b.mp4", "/tmp/x", 12, "0" * 64)
    message = derived.download_message("daily", "rec", item, 1.5)
    assert schemas.first_error("derived/download.json", message) is None
    dead = derived.dead_letter_message(
        stage="decode",
        reason="bad",
        source=SourcePosition("raw", 1, 2),
        key=None,
        value=b"\x00",
        headers=[("provider", b"daily")],
    )
    assert schemas.first_error("derived/dead-letter.json", dead) is None


def test_ids_are_deterministic():
    assert derived.stable_id("daily", "rec", "recording.completed") == derived.stable_id(
        "daily", "rec", "recording.completed"
    )
    assert derived.stable_id("daily", "rec", "a") != derived.stable_id("daily", "rec", "b")

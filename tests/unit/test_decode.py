import orjson
import pytest

from streamproc.core.events import RecordingEvent
from streamproc.providers.decode import Skipped, Unusable, decode_record

from helpers import example


@pytest.mark.parametrize("with_header", [True, False])
def test_edge_events_decode_with_or_without_the_provider_header(with_header):
    body = example("openvidu", "recordingEnded")
    headers = {"provider": b"openvidu"} if with_header else {}
    event = decode_record(body, headers)
    assert isinstance(event, RecordingEvent) and event.status == "finished"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (None, {}, "empty value"),
        (b"\xff\xfe", {}, "not valid JSON"),
        (b"[1, 2]", {}, "no known provider"),
        (b"{}", {"provider": b"zoom"}, "unknown provider"),
        (b'{"type": "recording.started", "id": "x", "payload": {}}', {}, "schema"),
    ],
)
def test_unusable_records_say_why(value, headers, reason):
    decoded = decode_record(value, headers)
    assert isinstance(decoded, Unusable)
    assert reason in decoded.reason


def test_events_about_no_recording_are_skipped_not_dead_lettered():
    body = orjson.dumps({"creationDate": 1, "event": "participantJoined", "data": {"roomId": "r"}})
    assert decode_record(body, {"provider": b"openvidu"}) == Skipped(
        "openvidu", "participantJoined"
    )


def test_a_value_over_the_event_limit_is_unusable_before_it_is_parsed():
    decoded = decode_record(b"[" * 2000, {"provider": b"daily"}, max_bytes=1000)
    assert decoded == Unusable("value of 2000 bytes is over the 1000-byte event limit")


def test_a_dead_letter_leaves_out_a_value_too_big_to_carry_but_says_its_size():
    from streamproc.core.derived import DEAD_LETTER_VALUE_LIMIT, dead_letter_message
    from streamproc.core.fold import SourcePosition

    source = SourcePosition("recordings.raw", 1, 3)
    small = dead_letter_message(stage="decode", reason="r", source=source, key=b"k", value=b"v")
    assert (small["value_base64"], small["value_size"]) == ("dg==", 1)
    big = b"x" * (DEAD_LETTER_VALUE_LIMIT + 1)
    large = dead_letter_message(stage="decode", reason="r", source=source, key=b"k", value=big)
    assert (large["value_base64"], large["value_size"]) == (None, len(big))
    assert large["source"] == {"topic": "recordings.raw", "partition": 1, "offset": 3}


def test_an_error_that_names_only_its_instance_waits_for_the_join():
    from streamproc.providers.decode import LINKED_RECORDING_HEADER, Unlinked

    body = example("daily", "recording.error")
    decoded = decode_record(body, {"provider": b"daily"})
    assert isinstance(decoded, Unlinked)
    assert decoded.instance_id == "c3df927c-f738-4471-a2b7-066fa7e95a6b"
    joined = decode_record(body, {"provider": b"daily", LINKED_RECORDING_HEADER: b"rec-1"})
    assert not isinstance(joined, Unlinked | Unusable | Skipped)
    assert (joined.recording_id, joined.status) == ("rec-1", "failed")


@pytest.mark.parametrize("field", ["recording_id", "instance_id"])
def test_an_id_beginning_with_nul_is_unusable_it_would_collide_with_the_workers_own_keys(field):
    document = orjson.loads(example("daily", "recording.started"))
    document["payload"][field] = "\x00stalls:0"
    decoded = decode_record(orjson.dumps(document), {"provider": b"daily"})
    assert isinstance(decoded, Unusable) and "NUL" in decoded.reason

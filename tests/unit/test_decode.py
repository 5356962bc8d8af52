import orjson
import pytest

from streamproc.events import RecordingEvent
from streamproc.worker.decode import Skipped, Unusable, decode_record

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

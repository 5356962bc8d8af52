"""Derived ids are a public contract: consumers de-duplicate on them across versions,
redeliveries and replays. These known inputs must keep their known ids; a change of
namespace, separator or inputs fails here first. (If an id scheme must ever change, it gets
a new message ``version`` and a note for consumers, not a silent change.)"""

import pytest

from streamproc.core import derived
from streamproc.core.fold import FetchRequest, SourcePosition, Transition

TRANSITION_IDS = {
    "starting": "56655bd6-88c6-5a8a-826c-9f5a86572a81",
    "active": "9a2a9146-bcdb-54c9-8165-be1af2ed2ef3",
    "stalled": "6b4f9d7b-33f8-5b48-8b0f-5561367c6ad5",
    "ending": "28f2de05-0de4-5f96-96f7-56dff1fa5820",
    "failed": "e63ee54d-e2d7-581b-9cd2-2fe8708dab6c",
    "finished": "8435c3ae-b569-5a1b-bdff-b29fbb74a9dd",
}


@pytest.mark.parametrize(("to_status", "event_id"), TRANSITION_IDS.items())
def test_a_lifecycle_transition_keeps_its_id(to_status, event_id):
    """provider, recording id and type: not the time or the event that caused it."""
    for caused_by, occurred_at in (("evt-1", 1_700_000_000.0), ("evt-9", 1.5)):
        transition = Transition("rec-42", "daily", None, to_status, caused_by, occurred_at)
        assert derived.lifecycle_message(transition)["event_id"] == event_id


def test_a_failed_start_keeps_its_id():
    message = derived.start_failed_message("daily", "inst-7", "evt-2", 1.0, None, None)
    assert message["event_id"] == "01bad5db-7224-5157-a2d0-0dc38d913bd2"


def test_a_fetch_request_keeps_its_id():
    request = FetchRequest("rec-42", "daily", None, None, None, None, None)
    assert derived.fetch_request_message(request)["request_id"] == (
        "2d58b541-5bab-5025-a7a1-6b7b3987c783"
    )


def test_a_download_keeps_its_id():
    stored = derived.DownloadedObject("bucket", "room/rec-42.mp4", "/sink/x", 1, "00")
    message = derived.download_message("daily", "rec-42", stored, 1.0)
    assert message["event_id"] == "e2f06088-1531-5118-af8b-8afc81317bff"


def test_a_dead_letter_keeps_its_id():
    """Where the record is in the log, and the stage: not its bytes or the reason."""
    source = SourcePosition("recordings.raw", 3, 1234)
    for reason, value in (("r", b"x"), ("other", None)):
        message = derived.dead_letter_message(
            stage="decode", reason=reason, source=source, key=None, value=value
        )
        assert message["event_id"] == "fe353278-fef3-5ac6-b309-3feb07a14194"

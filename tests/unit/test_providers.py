"""Provider checks and the raw-to-canonical mapping, on the example payloads from the seeds."""

import dataclasses

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core import schemas
from streamproc.providers import PROVIDERS, daily, openvidu
from streamproc.providers.base import Accepted, Verification
from streamproc.providers.errors import (
    MalformedJson,
    MissingSignature,
    ProviderError,
    SchemaViolation,
)
from streamproc.settings import Secret

from helpers import EXAMPLES, example

NOW = 1_700_000_000.0
SECRET = Secret("k0", b"k" * 32)
EVENT_EXAMPLES = [
    ("daily", "recording.started", "recording.started"),
    ("daily", "recording.ready-to-download", "recording.ready-to-download"),
    ("daily", "recording.ready-to-download.raw-tracks", "recording.ready-to-download"),
    ("daily", "recording.error", "recording.error"),
    ("daily", "verification", "verification"),
    ("openvidu", "recordingStarted", "recordingStarted"),
    ("openvidu", "recordingUpdated", "recordingUpdated"),
    ("openvidu", "recordingEnded", "recordingEnded"),
    ("openvidu", "testEvent", "testEvent"),
]


def _accept(provider_name: str, body: bytes, key: bytes = SECRET.key):
    provider = PROVIDERS[provider_name]
    headers = provider.scheme.signed_headers(key, body, str(int(NOW)))
    raw_headers = {k.encode(): v.encode() for k, v in headers.items()}
    return provider.accept(raw_headers, body, [SECRET], NOW, 300)


def test_every_example_is_covered():
    files = {(p.parent.name, p.stem) for p in EXAMPLES.rglob("*.json")}
    assert files == {(provider, name) for provider, name, _ in EVENT_EXAMPLES}


@pytest.mark.parametrize(("provider", "name", "schema"), EVENT_EXAMPLES)
def test_seed_examples_validate_against_their_schemas(provider, name, schema):
    document = orjson.loads(example(provider, name))
    assert schemas.first_error(f"raw/{provider}/{schema}.json", document) is None


@pytest.mark.parametrize(("provider", "name", "schema"), EVENT_EXAMPLES)
def test_canonical_mapping_of_examples_matches_the_canonical_schema(provider, name, schema):
    body = example(provider, name)
    if schema in ("verification", "testEvent"):
        assert isinstance(_accept(provider, body), Verification)
        return
    event = PROVIDERS[provider].canonical(body)
    assert event is not None
    if not event.recording_id:  # named only by its instance: the worker's join fills it in
        assert event.instance_id
        event = dataclasses.replace(event, recording_id="joined-recording")
    assert schemas.first_error("canonical/recording-event.json", event.to_dict()) is None


def test_daily_mapping_keeps_the_fields_the_fold_needs():
    finished = daily.PROVIDER.canonical(example("daily", "recording.ready-to-download.raw-tracks"))
    assert finished is not None
    assert finished.status == "finished"
    assert finished.recording_id == "5b0a61b6-1c9d-4b0f-9c3e-2f0e7a8d9c11"
    assert finished.duration_s == 95 and finished.participants == 2
    assert finished.tracks is not None and [t.kind for t in finished.tracks] == ["video", "audio"]
    error = daily.PROVIDER.canonical(example("daily", "recording.error"))
    assert error is not None and error.status == "failed"
    assert (error.recording_id, error.instance_id) == ("", "c3df927c-f738-4471-a2b7-066fa7e95a6b")
    started = daily.PROVIDER.canonical(example("daily", "recording.started"))
    assert started is not None
    assert started.recording_id == "08fa0b24-9220-44c5-846c-3f116cf8e738"
    assert started.instance_id == error.instance_id  # what the worker joins them by


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("STARTING", "starting"),
        ("active", "active"),
        ("COMPLETE", "finished"),
        ("aborted", "failed"),
        ("LIMIT_REACHED", "failed"),
        ("ending", "ending"),
    ],
)
def test_openvidu_status_is_normalised_whatever_its_case(status, expected):
    document = orjson.loads(example("openvidu", "recordingUpdated"))
    document["data"]["status"] = status
    event = openvidu.PROVIDER.canonical(orjson.dumps(document))
    assert event is not None and event.status == expected
    assert event.occurred_at == document["creationDate"] / 1000


def test_openvidu_event_id_depends_only_on_the_bytes():
    body = example("openvidu", "recordingEnded")
    first, second = _accept("openvidu", body), _accept("openvidu", body)
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.identity.event_id == second.identity.event_id
    assert first.identity.key == "room-123--EG_XYZ--XX445"


def test_unknown_event_types_are_accepted_but_not_recording_events():
    body = orjson.dumps({"creationDate": 1, "event": "meetingStarted", "data": {"roomId": "r"}})
    accepted = _accept("openvidu", body)
    assert isinstance(accepted, Accepted) and accepted.identity.key == "r"
    assert openvidu.PROVIDER.canonical(body) is None


def test_daily_verification_needs_no_signature_but_events_do():
    provider = daily.PROVIDER
    body = example("daily", "verification")
    assert isinstance(provider.accept({}, body, [SECRET], NOW, 300), Verification)
    with pytest.raises(MissingSignature):
        provider.accept({}, example("daily", "recording.started"), [SECRET], NOW, 300)


def test_signed_garbage_is_malformed_json_and_wrong_shape_is_a_schema_violation():
    with pytest.raises(MalformedJson):
        _accept("daily", b"{not json")
    with pytest.raises(SchemaViolation, match="payload: 'recording_id' is a required property"):
        _accept(
            "daily",
            b'{"version":"1","type":"recording.started","id":"x","payload":{},"event_ts":1}',
        )


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("daily", b'{"type": [], "id": "x", "payload": {}, "version": "1", "event_ts": 1}'),
        ("daily", b'["not", "an", "object"]'),
        ("daily", b'"just a string"'),
        ("openvidu", b'{"event": {"nested": 1}, "creationDate": 1, "data": {}}'),
        ("openvidu", b"null"),
    ],
)
def test_json_of_the_wrong_shape_is_a_schema_violation_not_a_crash(provider, body):
    with pytest.raises(SchemaViolation):
        _accept(provider, body)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
envelope_keys = st.sampled_from(
    ["type", "id", "payload", "version", "event_ts", "event", "data", "creationDate", "test"]
)


@settings(max_examples=300, deadline=None)
@given(
    provider=st.sampled_from(["daily", "openvidu"]),
    document=st.dictionaries(envelope_keys, json_values, max_size=6) | json_values,
)
def test_any_signed_json_is_accepted_or_refused_with_a_provider_error(provider, document):
    body = orjson.dumps(document)
    try:
        result = _accept(provider, body)
    except ProviderError:
        return
    assert isinstance(result, Accepted | Verification)
    if isinstance(result, Accepted):
        PROVIDERS[provider].canonical(body)  # a published event always maps (or is skipped)

"""Mapping files: checked on start with the line named, and mapped to canonical events."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core.fold import fold
from streamproc.providers import enabled_providers
from streamproc.providers.decode import Skipped, Unusable, decode_record
from streamproc.providers.mapping import MappingError, load_mapping, mapped_provider
from streamproc.settings import Settings, SettingsError

from helpers import REPO

EXAMPLE = REPO / "deploy" / "standard-webhooks" / "example.toml"


def acme(kind: str = "recording.ready", **data) -> bytes:
    recording = {"id": "rec-1", "s3_key": "acme/rec-1.mp4", "started_at": "2026-01-01T10:00:00Z"}
    document = {
        "type": kind,
        "timestamp": 1767261600,
        "data": {"recording": recording | data, "room": "standup"},
    }
    return orjson.dumps(document)


def test_the_example_maps_an_event_to_the_canonical_shape():
    provider = mapped_provider(load_mapping(EXAMPLE))
    event = provider.canonical(acme())
    assert event is not None
    assert (event.provider, event.recording_id, event.status) == ("acme", "rec-1", "finished")
    assert (event.occurred_at, event.started_at) == (1767261600.0, 1767261600.0)
    assert (event.s3_key, event.room, event.error) == ("acme/rec-1.mp4", "standup", None)
    assert event.event_id.startswith("acme-")  # no event_id pointer: a digest of the body
    assert provider.canonical(acme()).event_id == event.event_id


def test_times_in_milliseconds_and_without_an_offset_are_read_alike():
    provider = mapped_provider(load_mapping(EXAMPLE))
    millis = provider.canonical(acme(started_at=1767261600000))
    naive = provider.canonical(acme(started_at="2026-01-01T10:00:00"))
    assert millis.started_at == naive.started_at == 1767261600.0


def test_event_types_not_in_the_mapping_are_skipped():
    settings = Settings(standard_webhooks_mapping=str(EXAMPLE))
    providers = enabled_providers(settings)
    decoded = decode_record(acme("recording.thumbnail"), {"provider": b"acme"}, providers=providers)
    assert decoded == Skipped("acme", "recording.thumbnail")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (acme(id=None), "/data/recording/id: required"),
        (acme(id=""), "/data/recording/id: not a non-empty string"),
        (acme(started_at="yesterday"), "/data/recording/started_at: not a time"),
        (acme(duration="long"), "/data/recording/duration: not a number"),
        (b"[1]", "not a JSON object"),
        (b'{"timestamp": 1}', "/type: the event type is missing"),
    ],
)
def test_a_mapped_event_whose_values_do_not_fit_is_unusable_with_the_pointer(body, reason):
    settings = Settings(standard_webhooks_mapping=str(EXAMPLE))
    decoded = decode_record(body, {"provider": b"acme"}, providers=enabled_providers(settings))
    assert isinstance(decoded, Unusable) and reason in decoded.reason


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return path


GOOD_FIELDS = """
[fields]
event_type = "/type"
recording_id = "/id"
occurred_at = "/at"
"""


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ('name = "acme"\n[events]\n"a" = "done"\n' + GOOD_FIELDS, 3, "maps to 'done'"),
        ('name = "Acme Inc"\n[events]\n"a" = "active"\n' + GOOD_FIELDS, 1, "lower-case word"),
        ('name = "daily"\n[events]\n"a" = "active"\n' + GOOD_FIELDS, 1, "built-in"),
        (
            'name = "acme"\n[events]\n"a" = "active"\n[fields]\nevent_type = "type"\n',
            5,
            "not a JSON pointer",
        ),
        (
            'name = "acme"\n[events]\n"a" = "active"\n[fields]\nevent_type = "/t"\n',
            4,
            "needs 'recording_id'",
        ),
        (
            'name = "acme"\n[events]\n"a" = "active"\n' + GOOD_FIELDS + 'colour = "/c"\n',
            9,
            "colour",
        ),
        ('name = "acme"\nevents = 3\n', 2, "[events]"),
        ('name = "acme"\n[events\n', 2, "line 2"),
    ],
)
def test_a_bad_mapping_names_its_line(tmp_path, text, line, says):
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    message = str(error.value)
    assert says in message
    if "line 2" not in says:
        assert message.startswith(f"{path}:{line}: "), message


def test_the_settings_refuse_a_bad_mapping_and_a_bad_secret(tmp_path):
    path = write(tmp_path, 'name = "acme"\n')
    with pytest.raises(SettingsError, match="STANDARD_WEBHOOKS_MAPPING"):
        enabled_providers(Settings.from_env({"STREAMPROC_STANDARD_WEBHOOKS_MAPPING": str(path)}))
    missing = {"STREAMPROC_STANDARD_WEBHOOKS_MAPPING": str(tmp_path / "none")}
    with pytest.raises(SettingsError, match=r"STANDARD_WEBHOOKS_MAPPING: .*cannot be read"):
        enabled_providers(Settings.from_env(missing))
    with pytest.raises(SettingsError, match="STANDARD_WEBHOOKS_SECRETS"):
        Settings.from_env({"STREAMPROC_STANDARD_WEBHOOKS_SECRETS": "whsec_!!"})


def test_the_settings_give_the_mapped_provider_its_secrets():
    settings = Settings.from_env(
        {
            "STREAMPROC_STANDARD_WEBHOOKS_MAPPING": str(EXAMPLE),
            "STREAMPROC_STANDARD_WEBHOOKS_SECRETS": "new:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    )
    assert [secret.key_id for secret in settings.secrets_for("acme")] == ["new"]
    assert settings.secrets_for("daily") == ()


mapped_history = st.lists(
    st.tuples(
        st.sampled_from(["recording.started", "recording.stopping", "recording.ready", "x.y"]),
        st.integers(1767261600, 1767261600 + 7200),
    ),
    min_size=1,
    max_size=6,
    unique=True,
)


@settings(max_examples=200, deadline=None)
@given(mapped_history, st.data())
def test_mapped_events_in_any_order_and_duplicated_converge_and_complete_once(history, data):
    """The fold's convergence, for events that come through a mapping file."""
    provider = mapped_provider(load_mapping(EXAMPLE))
    bodies = [
        orjson.dumps(
            {"type": kind, "timestamp": at, "data": {"recording": {"id": "r", "s3_key": "k"}}}
        )
        for kind, at in history
    ]
    events = [e for e in (provider.canonical(body) for body in bodies) if e is not None]
    delivery = data.draw(
        st.permutations(events + data.draw(st.lists(st.sampled_from(events or [None]), max_size=4)))
    )
    states = []
    for order in (events, [e for e in delivery if e is not None]):
        state, completed = None, 0
        for item in order:
            state, output = fold(state, item)
            completed += sum(t.type == "recording.completed" for t in output.transitions)
        states.append((state and (state.status, state.event_ids, state.s3_key), completed))
    assert states[0] == states[1]
    assert states[0][1] == (1 if any(e.status == "finished" for e in events) else 0)

"""A provider defined by a mapping file, for anyone who signs with Standard Webhooks.

A team with another recording provider writes a small TOML file instead of code::

    name = "acme"                       # route /webhooks/acme; header provider=acme
    [events]                            # event type -> status; other types are skipped
    "recording.started" = "active"
    "recording.ready" = "finished"
    "recording.failed" = "failed"
    [fields]                            # JSON pointers (RFC 6901) into the body
    event_type = "/type"                # required
    recording_id = "/data/recording_id" # required
    occurred_at = "/timestamp"          # required: Unix s or ms, or RFC 3339
    s3_key = "/data/s3_key"             # optional from here on
    event_id = "/data/event_id"         # else a digest of the body (retries resend it)
    room = "/data/room"
    started_at = "/data/started_at"
    duration_s = "/data/duration"
    error = "/data/error"
    filename = "/data/filename"

It is checked when the edge or worker starts; a bad file stops it with the file, line and
what is wrong. Events are checked when they arrive: the pointers of a mapped event type
must lead to values of the right type, or the event is refused (400 at the edge, dead
letter in the worker).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from streamproc.core.events import RecordingEvent, Status
from streamproc.providers.base import Identity, Provider, body_digest_id
from streamproc.providers.signing import timestamp_seconds
from streamproc.providers.standard_webhooks import StandardWebhooksScheme

STATUSES: tuple[str, ...] = get_args(Status)
REQUIRED_FIELDS = ("event_type", "recording_id", "occurred_at")
TIME_FIELDS = ("occurred_at", "started_at")
NUMBER_FIELDS = ("duration_s",)
OPTIONAL_FIELDS = ("s3_key", "event_id", "room", "started_at", "duration_s", "error", "filename")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
RESERVED_NAMES = frozenset({"daily", "openvidu"})


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and line."""


class MissingValue(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class EventMapping:
    name: str
    events: Mapping[str, Status]
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Field name -> the pointer's reference tokens, unescaped."""


def load_mapping(path: Path) -> EventMapping:
    """Read and check a mapping file; raise MappingError naming the bad line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise MappingError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: {exc}") from None

    def fail(message: str, *keys: str) -> MappingError:
        return MappingError(f"{path}:{_line_of(text, keys)}: {message}")

    unknown = sorted(set(data) - {"name", "events", "fields"})
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; expected name, events, fields", unknown[0])
    name = data.get("name")
    if not isinstance(name, str) or not name.isidentifier() or not name.islower():
        raise fail("name must be a lower-case word (it is the route /webhooks/<name>)", "name")
    if name in RESERVED_NAMES:
        raise fail(f"name {name!r} is a built-in provider", "name")
    events = data.get("events")
    if not isinstance(events, dict) or not events:
        raise fail("[events] must map at least one event type to a status", "events")
    for event_type, status in events.items():
        if status not in STATUSES:
            raise fail(
                f"event {event_type!r} maps to {status!r}; expected one of {', '.join(STATUSES)}",
                "events",
                event_type,
            )
    fields = data.get("fields")
    if not isinstance(fields, dict):
        raise fail("[fields] is missing", "fields")
    pointers: dict[str, tuple[str, ...]] = {}
    for field_name, pointer in fields.items():
        if field_name not in FIELDS:
            message = f"unknown field {field_name!r}; expected {', '.join(FIELDS)}"
            raise fail(message, "fields", field_name)
        try:
            pointers[field_name] = _tokens(pointer)
        except ValueError as exc:
            raise fail(f"field {field_name!r}: {exc}", "fields", field_name) from None
    for required in REQUIRED_FIELDS:
        if required not in pointers:
            raise fail(f"[fields] needs {required!r}", "fields")
    return EventMapping(name=name, events=dict(events), fields=pointers)


def _line_of(text: str, keys: tuple[str, ...]) -> int:
    """The line where the last of ``keys`` appears, searching for each after the one before
    (TOML tables and keys are found as written; good enough to point a person at it)."""
    lines = text.splitlines()
    line = 0
    for key in keys:
        for index in range(line, len(lines)):
            stripped = lines[index].strip()
            if stripped.startswith(("[" + key + "]", key, f'"{key}"', f"'{key}'")):
                line = index
                break
    return line + 1


def _tokens(pointer: Any) -> tuple[str, ...]:
    """RFC 6901: ``/a/b~1c`` -> ("a", "b/c")."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON pointer (it must start with '/')")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/"))


def resolve(document: Any, tokens: tuple[str, ...]) -> Any:
    """The value at a pointer; MissingValue if there is none (or it is null)."""
    value = document
    for token in tokens:
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            raise MissingValue("/" + "/".join(tokens))
    if value is None:
        raise MissingValue("/" + "/".join(tokens))
    return value


def _time(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, int | float):
        return timestamp_seconds(str(value))
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return timestamp_seconds(value)
        # A time without an offset is UTC, never the machine's local time.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise ValueError(f"{type(value).__name__} is not a time")


class MappedEvents:
    """The provider's functions, bound to one mapping."""

    def __init__(self, mapping: EventMapping) -> None:
        self.mapping = mapping

    def value(self, document: Any, name: str, default: Any = None) -> Any:
        tokens = self.mapping.fields.get(name)
        if tokens is None:
            return default
        try:
            return resolve(document, tokens)
        except MissingValue:
            return default

    def event_type(self, document: Any) -> Any:
        return self.value(document, "event_type")

    def check(self, document: Any) -> str | None:
        """Why the document cannot be used, or None (a ``Provider.check``)."""
        if not isinstance(document, dict):
            return "(top level): the body is not a JSON object"
        event_type = self.event_type(document)
        if not isinstance(event_type, str):
            return f"{self._where('event_type')}: the event type is missing or not a string"
        if event_type not in self.mapping.events:
            return None  # not about a recording: skipped
        for name in self.mapping.fields:
            required = name in REQUIRED_FIELDS
            try:
                value = resolve(document, self.mapping.fields[name])
            except MissingValue:
                if required:
                    return f"{self._where(name)}: required for {event_type!r} and missing"
                continue
            problem = _type_problem(name, value)
            if problem:
                return f"{self._where(name)}: {problem}"
        return None

    def _where(self, name: str) -> str:
        return "/" + "/".join(self.mapping.fields[name])

    def event_id(self, document: dict[str, Any], body: bytes) -> str:
        return str(self.value(document, "event_id") or body_digest_id(self.mapping.name, body))

    def identify(self, document: dict[str, Any], body: bytes) -> Identity:
        event_id = self.event_id(document, body)
        key = self.value(document, "recording_id") or event_id
        return Identity(event_id=event_id, event_type=str(self.event_type(document)), key=str(key))

    def to_canonical(self, document: dict[str, Any], body: bytes) -> RecordingEvent | None:
        status = self.mapping.events.get(self.event_type(document))
        if status is None:
            return None
        started_at = self.value(document, "started_at")
        return RecordingEvent(
            provider=self.mapping.name,
            event_id=self.event_id(document, body),
            event_type=self.event_type(document),
            recording_id=self.value(document, "recording_id"),
            status=status,
            occurred_at=_time(self.value(document, "occurred_at")),
            room=self.value(document, "room"),
            started_at=None if started_at is None else _time(started_at),
            duration_s=self.value(document, "duration_s"),
            s3_key=self.value(document, "s3_key"),
            filename=self.value(document, "filename"),
            error=self.value(document, "error"),
        )


def _type_problem(name: str, value: Any) -> str | None:
    if name in TIME_FIELDS:
        try:
            _time(value)
        except ValueError as exc:
            return f"not a time ({exc})"
        return None
    if name in NUMBER_FIELDS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "not a number"
    if not isinstance(value, str) or not value:
        return "not a non-empty string"
    if len(value) > 512 and name in ("recording_id", "event_id"):
        return "longer than 512 characters"
    return None


def mapped_provider(mapping: EventMapping) -> Provider:
    events = MappedEvents(mapping)
    return Provider(
        name=mapping.name,
        scheme=StandardWebhooksScheme(),
        is_verification=lambda document: False,
        schema_name=lambda document: "",
        identify=events.identify,
        to_canonical=events.to_canonical,
        check=events.check,
    )

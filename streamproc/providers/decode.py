"""Raw log records (from the edge or any other producer) to canonical events, or why not.

Nothing here raises on bad input: every record becomes an event, a skip (a well-formed event
type we do not fold) or an ``Unusable`` with a reason for the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from streamproc.core.events import RESERVED_KEY_PREFIX, RecordingEvent
from streamproc.providers import PROVIDERS, Provider
from streamproc.providers.base import parse_json
from streamproc.providers.errors import InvalidEvent


@dataclass(frozen=True, slots=True)
class Skipped:
    """A valid event that is not about a recording's lifecycle (counted, not folded)."""

    provider: str
    event_type: str


@dataclass(frozen=True, slots=True)
class Unusable:
    reason: str


@dataclass(frozen=True, slots=True)
class Unlinked:
    """An event that names only its recording's instance (Daily's ``recording.error``): the
    worker routes it by instance id until ``recording.started`` links the two."""

    event: RecordingEvent

    @property
    def instance_id(self) -> str:
        return self.event.instance_id or ""


LINKED_RECORDING_HEADER = "linked-recording-id"
"""Set by the worker's instance join on an event it routes back to its recording."""


def _sniff_provider(document: Any) -> Provider | None:
    """For producers that send no ``provider`` header: recognise the envelope."""
    if isinstance(document, dict):
        if {"type", "payload", "id"} <= document.keys():
            return PROVIDERS["daily"]
        if {"event", "data", "creationDate"} <= document.keys():
            return PROVIDERS["openvidu"]
    return None


def header_dict(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> dict[str, bytes]:
    """A record's headers (Kafka gives a list of pairs) by name; the last one wins."""
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: value for name, value in items}


RESERVED_PREFIX = RESERVED_KEY_PREFIX.decode()
MAX_EVENT_BYTES = 1024 * 1024
"""The edge's default body limit (``STREAMPROC_MAX_BODY_BYTES``): no provider event is larger."""


def decode_record(
    value: bytes | None,
    headers: Mapping[str, bytes],
    max_bytes: int = MAX_EVENT_BYTES,
    providers: Mapping[str, Provider] = PROVIDERS,
) -> RecordingEvent | Unlinked | Skipped | Unusable:
    """``providers``: by name, for the ``provider`` header (``enabled_providers``)."""
    if not value:
        return Unusable("empty value (no event bytes)")
    if len(value) > max_bytes:
        return Unusable(f"value of {len(value)} bytes is over the {max_bytes}-byte event limit")
    try:
        document = parse_json(value)
    except InvalidEvent as exc:
        return Unusable(str(exc))
    named = headers.get("provider")
    if named is not None:
        provider = providers.get(named.decode(errors="replace"))
        if provider is None:
            return Unusable(f"unknown provider header {named!r}")
    else:
        provider = _sniff_provider(document)
        if provider is None:
            return Unusable("no provider header and the body is no known provider's envelope")
    try:
        provider.validate(document)
        event = provider.to_canonical(document, value)
    except InvalidEvent as exc:
        return Unusable(str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return Unusable(f"{provider.name} event could not be mapped: {exc!r}")
    if event is None:
        event_type = document.get("type") or document.get("event") or "?"
        return Skipped(provider.name, str(event_type))
    if any(
        name.startswith(RESERVED_PREFIX) for name in (event.recording_id, event.instance_id or "")
    ):
        return Unusable(f"{provider.name} event names an id that begins with NUL (reserved)")
    if not event.recording_id:
        linked = headers.get(LINKED_RECORDING_HEADER)
        if linked:
            return replace(event, recording_id=linked.decode(errors="replace"))
        if event.instance_id:
            return Unlinked(event)
        return Unusable(f"{provider.name} event names neither a recording nor an instance")
    return event

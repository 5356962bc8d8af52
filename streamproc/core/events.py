"""The canonical recording event: one provider event, mapped to provider-neutral fields.

Providers produce it, the fold consumes it; ``schemas/canonical/recording-event.json``
describes the same shape for consumers outside Python (a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

CANONICAL_VERSION = "1.1.0"
RESERVED_KEY_PREFIX = b"\x00"
"""The worker's tables keep their own entries under keys that begin with NUL (the stall clock,
the join's pending list), so no recording or instance id may (``providers.decode`` refuses
one)."""
"""1.1: ``provider`` may name a Standard Webhooks mapping."""

Status = Literal["starting", "active", "ending", "finished", "failed"]


@dataclass(frozen=True, slots=True)
class Track:
    """One file of a raw-tracks recording."""

    s3_key: str
    size: int | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingEvent:
    provider: str
    event_id: str
    event_type: str
    recording_id: str
    status: Status
    occurred_at: float
    room: str | None = None
    started_at: float | None = None
    duration_s: float | None = None
    participants: int | None = None
    recording_type: str | None = None
    s3_key: str | None = None
    tracks: tuple[Track, ...] | None = None
    filename: str | None = None
    error: str | None = None
    instance_id: str | None = None
    """Daily's id of the recording attempt; ``recording.error`` names only this."""
    version: str = CANONICAL_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tracks"] = tracks_as_dicts(self.tracks)
        return data


def tracks_as_dicts(tracks: tuple[Track, ...] | None) -> list[dict[str, Any]] | None:
    """Tracks as plain data, for JSON messages and table values."""
    return None if tracks is None else [flat_dict(track) for track in tracks]


def flat_dict(instance: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` for a dataclass whose fields are all plain values, at a tenth of
    its cost (it deep-copies every field; the fold writes a few of these per event)."""
    return {name: getattr(instance, name) for name in instance.__dataclass_fields__}

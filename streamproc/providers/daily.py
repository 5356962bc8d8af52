"""Daily.co: base64 HMAC over ``X-Webhook-Timestamp.body``, keyed with the decoded ``hmac``."""

from __future__ import annotations

from typing import Any

from streamproc.core.events import RecordingEvent, Status, Track
from streamproc.providers.base import Identity, Provider
from streamproc.providers.signing import HmacScheme

SCHEME = HmacScheme(
    signature_header=b"x-webhook-signature",
    timestamp_header=b"x-webhook-timestamp",
    encoding="base64",
)
STATUS_BY_TYPE: dict[str, Status] = {
    "recording.started": "active",
    "recording.ready-to-download": "finished",
    "recording.error": "failed",
}


def is_verification(document: Any) -> bool:
    return isinstance(document, dict) and "test" in document and "type" not in document


def schema_name(document: dict[str, Any]) -> str:
    event_type = document.get("type")
    if isinstance(event_type, str) and event_type in STATUS_BY_TYPE:
        return f"raw/daily/{event_type}.json"
    return "raw/daily/envelope.json"


def identify(document: dict[str, Any], body: bytes) -> Identity:
    """Keyed by recording id; an error that names only its instance, by the instance id (the
    worker joins it to its recording through ``recording.started``, which carries both)."""
    payload = document["payload"]
    key = (
        payload.get("recording_id")
        or payload.get("instance_id")
        or payload.get("room_name")
        or document["id"]
    )
    return Identity(event_id=document["id"], event_type=document["type"], key=str(key))


def _tracks(payload: dict[str, Any]) -> tuple[Track, ...] | None:
    tracks = payload.get("tracks")
    if tracks is None:
        return None
    return tuple(Track(s3_key=t["s3Key"], size=t.get("size"), kind=t.get("type")) for t in tracks)


def to_canonical(document: dict[str, Any], body: bytes) -> RecordingEvent | None:
    """An error without ``recording_id`` maps with an empty one: ``providers.decode`` holds it
    as ``Unlinked`` until the instance's ``recording.started`` names the recording."""
    status = STATUS_BY_TYPE.get(document["type"])
    if status is None:
        return None
    payload = document["payload"]
    return RecordingEvent(
        provider="daily",
        event_id=document["id"],
        event_type=document["type"],
        recording_id=str(payload.get("recording_id") or ""),
        instance_id=payload.get("instance_id"),
        status=status,
        occurred_at=float(document["event_ts"]),
        room=payload.get("room_name"),
        started_at=payload.get("start_ts"),
        duration_s=payload.get("duration"),
        participants=payload.get("max_participants"),
        recording_type=payload.get("type"),
        s3_key=payload.get("s3_key"),
        tracks=_tracks(payload),
        error=payload.get("error_msg"),
    )


PROVIDER = Provider(
    name="daily",
    scheme=SCHEME,
    is_verification=is_verification,
    schema_name=schema_name,
    identify=identify,
    to_canonical=to_canonical,
    unsigned_verification=True,
)

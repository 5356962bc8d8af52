"""OpenVidu Meet: hex HMAC over ``x-timestamp.body`` keyed with the API key; no event id sent."""

from __future__ import annotations

from typing import Any

from streamproc.core.events import RecordingEvent, Status
from streamproc.providers.base import Identity, Provider, body_digest_id
from streamproc.providers.signing import HmacScheme

SCHEME = HmacScheme(
    signature_header=b"x-signature", timestamp_header=b"x-timestamp", encoding="hex"
)
RECORDING_EVENTS = frozenset({"recordingStarted", "recordingUpdated", "recordingEnded"})
STATUS: dict[str, Status] = {
    "starting": "starting",
    "active": "active",
    "ending": "ending",
    "complete": "finished",
    "failed": "failed",
    "aborted": "failed",
    "limit_reached": "failed",
}


def _ms_to_seconds(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def is_verification(document: Any) -> bool:
    return isinstance(document, dict) and document.get("event") == "testEvent"


def schema_name(document: dict[str, Any]) -> str:
    event = document.get("event")
    if isinstance(event, str) and event in RECORDING_EVENTS:
        return f"raw/openvidu/{event}.json"
    return "raw/openvidu/envelope.json"


def identify(document: dict[str, Any], body: bytes) -> Identity:
    data = document["data"]
    key = data.get("recordingId") or data.get("roomId") or body_digest_id("openvidu", body)
    return Identity(
        event_id=body_digest_id("openvidu", body), event_type=document["event"], key=str(key)
    )


def to_canonical(document: dict[str, Any], body: bytes) -> RecordingEvent | None:
    if document["event"] not in RECORDING_EVENTS:
        return None
    data = document["data"]
    return RecordingEvent(
        provider="openvidu",
        event_id=body_digest_id("openvidu", body),
        event_type=document["event"],
        recording_id=data["recordingId"],
        status=STATUS[data["status"].lower()],
        occurred_at=document["creationDate"] / 1000.0,
        room=data.get("roomId"),
        started_at=_ms_to_seconds(data.get("startDate")),
        duration_s=data.get("duration"),
        filename=data.get("filename"),
        error=data.get("error"),
    )


PROVIDER = Provider(
    name="openvidu",
    scheme=SCHEME,
    is_verification=is_verification,
    schema_name=schema_name,
    identify=identify,
    to_canonical=to_canonical,
)

"""The messages on derived topics: a public contract, described by ``schemas/derived/``.

Every message carries a semver ``version``. Ids are deterministic (UUIDv5 over what the
message is about), so a replay or a redelivery produces the same id and consumers can
de-duplicate on it.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamproc.core.events import tracks_as_dicts
from streamproc.core.fold import (
    FetchRequest,
    FoldOutput,
    RecordingState,
    SourcePosition,
    Transition,
)

STATE_VERSION = "1.1.0"
"""1.1: status ``stalled``."""
LIFECYCLE_VERSION = "1.1.0"
"""1.1: ``recording.stalled``, ``recording.start-failed``, ``error`` on ``recording.failed``."""
FETCH_REQUEST_VERSION = "1.1.0"
DOWNLOAD_VERSION = "1.1.0"
"""1.1 (all of the above): ``provider`` may name a Standard Webhooks mapping."""
DEAD_LETTER_VERSION = "1.1.0"
"""1.1: ``attempt`` (a dead letter sent back by ``streamproc dlq redrive`` that failed again)."""
ATTEMPT_HEADER = "streamproc-attempt"
"""On a record ``streamproc dlq redrive`` sent back: the attempt it is (2 for the first resend)."""
START_FAILED = "recording.start-failed"
START_GRACE_S = 600.0
"""An instance that no ``recording.started`` names this long (in event time) after its first
error is a failed start attempt; Daily starts a recording within seconds of the call."""
NAMESPACE = uuid.UUID("6f1c6a8e-3a53-4f43-9a55-6d1b8f2b7c11")
"""Fixed forever: changing it would change every derived id."""


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def state_message(state: RecordingState, updated_by: str) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "recording_id": state.recording_id,
        "provider": state.provider,
        "status": state.status,
        "room": state.room,
        "first_seen_at": state.first_seen_at,
        "last_seen_at": state.last_seen_at,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "duration_s": state.duration_s,
        "participants": state.participants,
        "recording_type": state.recording_type,
        "s3_key": state.s3_key,
        "tracks": tracks_as_dicts(state.tracks),
        "filename": state.filename,
        "error": state.error,
        "events_applied": len(state.event_ids),
        "source_offsets": dict(state.offsets),
        "updated_by": updated_by,
    }


def lifecycle_message(transition: Transition) -> dict[str, Any]:
    """``error`` only on ``recording.failed`` (the provider's message)."""
    message = {
        "version": LIFECYCLE_VERSION,
        "event_id": stable_id(transition.provider, transition.recording_id, transition.type),
        "type": transition.type,
        "recording_id": transition.recording_id,
        "provider": transition.provider,
        "from_status": transition.from_status,
        "to_status": transition.to_status,
        "occurred_at": transition.occurred_at,
        "caused_by": transition.caused_by,
    }
    if transition.to_status == "failed":
        message["error"] = transition.error
    return message


def start_failed_message(
    provider: str,
    instance_id: str,
    caused_by: str,
    occurred_at: float,
    room: str | None,
    error: str | None,
) -> dict[str, Any]:
    """A recording attempt that failed before any recording existed (Daily's error for an
    instance that no ``recording.started`` followed): keyed by instance, no recording id."""
    return {
        "version": LIFECYCLE_VERSION,
        "event_id": stable_id(provider, instance_id, START_FAILED),
        "type": START_FAILED,
        "recording_id": None,
        "instance_id": instance_id,
        "provider": provider,
        "from_status": None,
        "to_status": "failed",
        "occurred_at": occurred_at,
        "caused_by": caused_by,
        "room": room,
        "error": error,
    }


def fetch_request_message(request: FetchRequest) -> dict[str, Any]:
    return {
        "version": FETCH_REQUEST_VERSION,
        "request_id": stable_id(request.provider, request.recording_id, "fetch"),
        "recording_id": request.recording_id,
        "provider": request.provider,
        "room": request.room,
        "s3_key": request.s3_key,
        "tracks": tracks_as_dicts(request.tracks),
        "filename": request.filename,
        "recording_type": request.recording_type,
    }


def fold_messages(
    state: RecordingState, output: FoldOutput, event_id: str, refetch: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """What one fold step publishes, as ``(kind, message)`` with kind ``state``,
    ``lifecycle`` or ``fetch``: the worker and ``replay`` send exactly these."""
    messages: list[tuple[str, dict[str, Any]]] = [("state", state_message(state, event_id))]
    messages += [("lifecycle", lifecycle_message(t)) for t in output.transitions]
    if output.fetch is not None:
        request = fetch_request_message(output.fetch)
        messages.append(("fetch", request | {"refetch": True} if refetch else request))
    return messages


@dataclass(frozen=True, slots=True)
class DownloadedObject:
    """One file fetched from S3 and stored in the sink, verified."""

    source_bucket: str
    source_key: str
    destination: str
    size: int
    sha256: str


def download_message(
    provider: str, recording_id: str, downloaded: DownloadedObject, fetched_at: float
) -> dict[str, Any]:
    return {
        "version": DOWNLOAD_VERSION,
        "event_id": stable_id(provider, recording_id, "download", downloaded.source_key),
        "recording_id": recording_id,
        "provider": provider,
        "source": {"bucket": downloaded.source_bucket, "key": downloaded.source_key},
        "destination": downloaded.destination,
        "size": downloaded.size,
        "sha256": downloaded.sha256,
        "fetched_at": fetched_at,
    }


DEAD_LETTER_VALUE_LIMIT = 512 * 1024
"""Larger values are left out of a dead letter (which must stay under Kafka's default 1 MB
message limit, base64 and all); ``source`` says where the exact bytes are in the log."""


def _value_base64(value: bytes | None) -> str | None:
    if value is None or len(value) > DEAD_LETTER_VALUE_LIMIT:
        return None
    return base64.b64encode(value).decode()


def dead_letter_message(
    *,
    stage: str,
    reason: str,
    source: SourcePosition,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] = (),
    recording_id: str | None = None,
) -> dict[str, Any]:
    """The original bytes (base64, exact; left out over ``DEAD_LETTER_VALUE_LIMIT``), why they
    were unusable, where they came from, and how many times they were tried."""
    headers = list(headers)
    return {
        "version": DEAD_LETTER_VERSION,
        "event_id": stable_id(
            "dlq", stage, source.topic, str(source.partition), str(source.offset)
        ),
        "stage": stage,
        "reason": reason,
        "recording_id": recording_id,
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "key_base64": None if key is None else base64.b64encode(key).decode(),
        "value_base64": _value_base64(value),
        "value_size": None if value is None else len(value),
        "headers": {name: base64.b64encode(data).decode() for name, data in headers},
        "dead_lettered_at": time.time(),
        "attempt": attempt_of(dict(headers)),
    }


def attempt_of(headers: Mapping[str, bytes]) -> int:
    """1 for a record as it first came; what ``streamproc dlq redrive`` said for a resend."""
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, b"1")))
    except ValueError:
        return 1

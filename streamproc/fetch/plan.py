"""Which objects a finished recording has, and where each may be written.

Daily names its objects (``s3_key``, or one key per track for raw-tracks); OpenVidu names
none, so its key comes from ``STREAMPROC_OPENVIDU_KEY_TEMPLATE``. Every destination is a
relative path checked here, once, before any byte is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from streamproc.fetch.errors import NothingToFetch, UnsafeDestination


def object_keys(request: Mapping[str, Any], openvidu_key_template: str) -> list[str]:
    tracks = request.get("tracks")
    if tracks:
        return [track["s3_key"] for track in tracks]
    if request.get("s3_key"):
        return [request["s3_key"]]
    if request["provider"] == "openvidu":
        values = {
            "provider": request["provider"],
            "recording_id": request["recording_id"],
            "room": request.get("room"),
            "filename": request.get("filename"),
        }
        missing = [
            name
            for name, value in values.items()
            if value is None and f"{{{name}}}" in openvidu_key_template
        ]
        if missing:
            raise NothingToFetch(
                f"key template {openvidu_key_template!r} needs {', '.join(missing)}, "
                "which the recording's events did not carry"
            )
        return [openvidu_key_template.format(**values)]
    raise NothingToFetch("the finished recording names no S3 key and no tracks")


def _safe_parts(what: str, value: str) -> list[str]:
    if "\x00" in value:
        raise UnsafeDestination(f"{what} {value!r} contains a NUL byte")
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        raise UnsafeDestination(f"{what} {value!r} is an absolute path")
    parts = value.replace("\\", "/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeDestination(f"{what} {value!r} has an empty, '.' or '..' path segment")
    return parts


def destination(provider: str, recording_id: str, key: str) -> PurePosixPath:
    """``<provider>/<recording id>/<key>``, refusing anything that could leave the sink."""
    return PurePosixPath(
        *_safe_parts("provider", provider),
        *_safe_parts("recording id", recording_id),
        *_safe_parts("object key", key),
    )

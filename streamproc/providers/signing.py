"""The HMAC-SHA256 ``<timestamp>.<raw body>`` signature scheme both providers use.

Daily and OpenVidu Meet differ only in header names and in how the digest is written
(base64 vs hex), so one scheme object per provider carries those differences as data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from streamproc.providers.errors import MissingSignature, SignatureMismatch, StaleTimestamp
from streamproc.settings import Secret

MILLISECONDS_THRESHOLD = 100_000_000_000
"""Timestamps above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973."""


def timestamp_seconds(text: str) -> float:
    """Parse a Unix timestamp given in seconds or milliseconds, returning seconds."""
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return value / 1000.0 if abs(value) >= MILLISECONDS_THRESHOLD else value


def check_age(header: str, text: str, sent_at: float, now: float, tolerance_s: float) -> None:
    """Raise StaleTimestamp if ``sent_at`` is further than the tolerance from ``now``."""
    age = now - sent_at
    if abs(age) > tolerance_s:
        direction = "old" if age > 0 else "in the future"
        raise StaleTimestamp(
            f"{header} {text} is {abs(age):.0f} s {direction}; the tolerance is {tolerance_s:.0f} s"
        )


@dataclass(frozen=True, slots=True)
class HmacScheme:
    """Where a provider puts its signature and timestamp, and how it encodes the digest."""

    signature_header: bytes
    timestamp_header: bytes
    encoding: Literal["base64", "hex"]

    def sign(self, key: bytes, timestamp: str, body: bytes) -> str:
        """The signature a provider would send; used by tests, the demo and README."""
        digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode() if self.encoding == "base64" else digest.hex()

    def signed_headers(self, key: bytes, body: bytes, timestamp: str) -> dict[str, str]:
        """The headers a provider would add to ``body``: what the demo and tests send."""
        return {
            self.timestamp_header.decode(): timestamp,
            self.signature_header.decode(): self.sign(key, timestamp, body),
            "content-type": "application/json",
        }

    def verify(
        self,
        headers: dict[bytes, bytes],
        body: bytes,
        secrets: Sequence[Secret],
        now: float,
        tolerance_s: float,
    ) -> str:
        """Return the id of the secret that verifies ``body``; raise a SignatureError if none.

        The timestamp is checked before the HMAC so a replayed old request is named as such.
        Every secret is tried with a constant-time comparison (several are active during
        key rotation).
        """
        signature = headers.get(self.signature_header)
        timestamp = headers.get(self.timestamp_header)
        if not signature or not timestamp:
            missing = self.signature_header if not signature else self.timestamp_header
            raise MissingSignature(f"header {missing.decode()} is missing")
        timestamp_text = timestamp.decode("latin-1").strip()
        try:
            sent_at = timestamp_seconds(timestamp_text)
        except ValueError:
            raise StaleTimestamp(
                f"{self.timestamp_header.decode()} {timestamp_text!r} is not a Unix timestamp"
            ) from None
        check_age(self.timestamp_header.decode(), timestamp_text, sent_at, now, tolerance_s)
        given = signature.decode("latin-1").strip()
        matched = None
        for secret in secrets:
            expected = self.sign(secret.key, timestamp_text, body)
            if hmac.compare_digest(expected.encode(), given.encode()) and matched is None:
                matched = secret.key_id
        if matched is None:
            raise SignatureMismatch(
                f"{self.signature_header.decode()} does not match any active secret"
            )
        return matched

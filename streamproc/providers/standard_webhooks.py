"""Standard Webhooks (standardwebhooks.com; Svix and many providers sign this way).

``webhook-signature`` holds space-separated ``v1,<base64 HMAC-SHA256>`` entries over
``<webhook-id>.<webhook-timestamp>.<raw body>``, keyed with the base64 part of a
``whsec_...`` secret; ``webhook-timestamp`` is in Unix seconds. Several signatures (the
sender rotating its secret) and several secrets (us rotating ours) are both allowed: any
``v1`` signature that matches any secret is enough. Other versions are ignored, as the
specification asks.

What the events mean is not standard: a mapping file says it (``providers/mapping.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from streamproc.providers.errors import MissingSignature, SignatureMismatch, StaleTimestamp
from streamproc.providers.signing import check_age
from streamproc.settings import Secret

ID_HEADER = b"webhook-id"
TIMESTAMP_HEADER = b"webhook-timestamp"
SIGNATURE_HEADER = b"webhook-signature"


def _digest(key: bytes, webhook_id: bytes, timestamp: bytes, body: bytes) -> bytes:
    """Over the headers' bytes as sent (an id is not decoded and encoded again)."""
    signed = webhook_id + b"." + timestamp + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _v1_signatures(header: str) -> list[bytes]:
    """The decodable ``v1`` entries of a signature header; anything else is not ours."""
    found = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    return found


@dataclass(frozen=True, slots=True)
class StandardWebhooksScheme:
    signature_header: bytes = SIGNATURE_HEADER

    def sign(self, key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
        """The ``v1,...`` entry a sender would put in ``webhook-signature``."""
        digest = _digest(key, webhook_id.encode(), timestamp.encode(), body)
        return "v1," + base64.b64encode(digest).decode()

    def signed_headers(
        self, key: bytes, body: bytes, timestamp: str, webhook_id: str = "msg_streamproc"
    ) -> dict[str, str]:
        """What a sender adds to ``body``: used by tests and the README's example."""
        return {
            ID_HEADER.decode(): webhook_id,
            TIMESTAMP_HEADER.decode(): timestamp,
            SIGNATURE_HEADER.decode(): self.sign(key, webhook_id, timestamp, body),
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
        """The id of the secret that verifies ``body``; raise a SignatureError if none.
        Timestamp before HMAC, so that a replayed old request is named as such."""
        for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
            if not headers.get(name):
                raise MissingSignature(f"header {name.decode()} is missing")
        webhook_id = headers[ID_HEADER].strip()
        timestamp = headers[TIMESTAMP_HEADER].decode("latin-1").strip()
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise StaleTimestamp(f"webhook-timestamp {timestamp!r} is not Unix seconds")
        check_age(TIMESTAMP_HEADER.decode(), timestamp, int(timestamp), now, tolerance_s)
        given = _v1_signatures(headers[SIGNATURE_HEADER].decode("latin-1"))
        matched = None
        for secret in secrets:
            expected = _digest(secret.key, webhook_id, timestamp.encode(), body)
            for signature in given:
                if hmac.compare_digest(expected, signature) and matched is None:
                    matched = secret.key_id
        if matched is None:
            raise SignatureMismatch("webhook-signature has no v1 signature of an active secret")
        return matched

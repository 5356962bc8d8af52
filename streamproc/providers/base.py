"""What every provider offers: verify a request, and map a raw event to the canonical event.

A provider is data (its signature scheme, schema names) plus two small functions; the
checking order (signature, JSON, schema) lives here once for all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from streamproc.core import schemas
from streamproc.core.events import RecordingEvent
from streamproc.providers.errors import MalformedJson, SchemaViolation
from streamproc.settings import Secret


@dataclass(frozen=True, slots=True)
class Identity:
    """How the edge files an event: its id (for de-duplication) and its partition key."""

    event_id: str
    event_type: str
    key: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified, well-formed event to publish verbatim."""

    identity: Identity
    key_id: str


@dataclass(frozen=True, slots=True)
class Verification:
    """A provider's endpoint check: answer 200, publish nothing."""


VERIFICATION = Verification()


def body_digest_id(provider: str, body: bytes) -> str:
    """A stable event id for providers that send none: the same bytes give the same id."""
    return f"{provider}-{hashlib.sha256(body).hexdigest()[:32]}"


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"body is not valid JSON: {exc}") from None


class SignatureScheme(Protocol):
    signature_header: bytes

    def verify(
        self,
        headers: dict[bytes, bytes],
        body: bytes,
        secrets: Sequence[Secret],
        now: float,
        tolerance_s: float,
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    scheme: SignatureScheme
    is_verification: Callable[[Any], bool]
    schema_name: Callable[[dict[str, Any]], str]
    identify: Callable[[dict[str, Any], bytes], Identity]
    to_canonical: Callable[[dict[str, Any], bytes], RecordingEvent | None]
    """None for event types that are not about a recording (counted and skipped)."""
    unsigned_verification: bool = False
    """Daily checks a new endpoint before the user has its secret, so the check is unsigned."""
    check: Callable[[Any], str | None] | None = None
    """Instead of schema files: why a document cannot be used, or None (mapped providers)."""

    def accept(
        self,
        headers: dict[bytes, bytes],
        body: bytes,
        secrets: Sequence[Secret],
        now: float,
        tolerance_s: float,
    ) -> Accepted | Verification:
        """Check signature, then JSON, then schema; raise a ProviderError naming the failure."""
        if self.unsigned_verification and self.scheme.signature_header not in headers:
            try:
                if self.is_verification(orjson.loads(body)):
                    return VERIFICATION
            except orjson.JSONDecodeError:
                pass
        key_id = self.scheme.verify(headers, body, secrets, now, tolerance_s)
        document = parse_json(body)
        if self.is_verification(document):
            return VERIFICATION
        self.validate(document)
        return Accepted(identity=self.identify(document, body), key_id=key_id)

    def validate(self, document: Any) -> None:
        """With the provider's own ``check``, or against its schema files."""
        check = self.check or self._schema_problem
        problem = check(document)
        if problem is not None:
            raise SchemaViolation(f"{self.name} event does not match its schema: {problem}")

    def _schema_problem(self, document: Any) -> str | None:
        """Against the event type's schema (which includes the envelope), or the envelope:
        ``schema_name`` may only look at a dict, and the envelope refuses anything else."""
        envelope = f"raw/{self.name}/envelope.json"
        name = self.schema_name(document) if isinstance(document, dict) else envelope
        return schemas.first_error(name, document)

    def canonical(self, body: bytes) -> RecordingEvent | None:
        """Map raw bytes (from the log, not yet trusted) to the canonical event."""
        document = parse_json(body)
        self.validate(document)
        return self.to_canonical(document, body)

"""Why a webhook was refused. Each error carries the stable ``code`` the edge answers with."""

from __future__ import annotations


class ProviderError(Exception):
    """A request a provider module cannot accept; ``code`` is part of the HTTP contract."""

    code = "invalid_request"


class SignatureError(ProviderError):
    """Authentication failed: the edge answers 401."""


class MissingSignature(SignatureError):
    code = "missing_signature"


class StaleTimestamp(SignatureError):
    code = "stale_timestamp"


class SignatureMismatch(SignatureError):
    code = "bad_signature"


class InvalidEvent(ProviderError):
    """The body is not JSON or does not match the provider's schema: the edge answers 400."""


class MalformedJson(InvalidEvent):
    code = "malformed_json"


class SchemaViolation(InvalidEvent):
    code = "schema_violation"

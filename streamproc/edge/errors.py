"""Edge refusals: each maps to one HTTP status and a stable ``error`` code."""

from __future__ import annotations


class EdgeError(Exception):
    status = 400
    code = "bad_request"
    headers: tuple[tuple[bytes, bytes], ...] = ()


class NotFound(EdgeError):
    status = 404
    code = "not_found"


class UnknownProvider(EdgeError):
    status = 404
    code = "unknown_provider"


class MethodNotAllowed(EdgeError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: str) -> None:
        super().__init__(message)
        self.headers = ((b"allow", allowed.encode()),)


class BodyTooLarge(EdgeError):
    status = 413
    code = "body_too_large"


class RequestTimeout(EdgeError):
    """The body did not arrive within ``STREAMPROC_BODY_TIMEOUT_S``."""

    status = 408
    code = "request_timeout"


class UnsupportedMediaType(EdgeError):
    status = 415
    code = "unsupported_media_type"


class BrokerUnavailable(EdgeError):
    """Kafka did not acknowledge in time: the provider should retry, nothing was promised."""

    status = 503
    code = "broker_unavailable"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = ((b"retry-after", str(retry_after_s).encode()),)

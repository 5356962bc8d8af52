"""uvicorn's httptools protocol with a deadline on the request head.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but not a request
whose line and headers never finish: a client trickling one header byte a second (slowloris)
holds its socket, and its memory, for as long as it likes. Here the head must be complete
within ``header_timeout_s`` of the connection opening or of the previous response; if not,
the connection is closed, with a 408 if part of a request had come. The body has its own
bound in the app (``STREAMPROC_BODY_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TIMEOUT_BODY = orjson.dumps(
    {"error": "request_timeout", "message": "the request line and headers came too slowly"}
)
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(TIMEOUT_BODY)
    + TIMEOUT_BODY
)


class HeadDeadlineProtocol(HttpToolsProtocol):
    """Also answers a request it cannot parse in the edge's one error shape (JSON)."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._head_deadline: TimerHandle | None = None
        self._head_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        self._head_started = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_started = False
        if not self.transport.is_closing():
            self._arm()  # the next request on this keep-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps({"error": "malformed_request", "message": msg})
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            if self._head_started:
                self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()

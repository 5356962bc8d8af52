"""The few raw ASGI helpers the edge needs: read a bounded body, send a JSON answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from streamproc.edge.errors import BodyTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LINGER_BYTES = 16 * 1024 * 1024
"""An oversized body up to this size is read (and dropped) before the 413 goes out."""
LINGER_S = 5.0


class ClientDisconnected(Exception):
    """The client went away before sending its whole body; there is nobody to answer."""


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by lower-case name (ASGI already lower-cases them); last one wins."""
    return dict(scope["headers"])


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole body, refusing (``BodyTooLarge``) once it is over ``limit``.

    Before refusing, an oversized body is read and discarded up to ``LINGER_BYTES`` or
    ``LINGER_S`` (a lingering close, as nginx does): a client that writes its whole body
    before reading (Python's urllib) then reads the 413 instead of a connection reset.
    """
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        too_large = BodyTooLarge(
            f"body of {int(declared)} bytes is over the limit of {limit} bytes"
        )
        if int(declared) <= LINGER_BYTES:
            await _discard_rest(receive, 0)
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _discard_rest(receive, size)
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _discard_rest(receive: Receive, already: int) -> None:
    """Read and drop the rest of a body, within the lingering bounds; never raises."""
    try:
        async with asyncio.timeout(LINGER_S):
            while already <= LINGER_BYTES:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                already += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: Any, extra_headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_bytes(send, status, orjson.dumps(payload), b"application/json", extra_headers)


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """The one error shape clients see: a stable ``error`` code and a readable ``message``."""
    await send_json(send, status, {"error": code, "message": message}, extra_headers)

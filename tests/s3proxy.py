"""A real HTTP reverse proxy in front of moto's S3 server that counts and injects faults.

It forwards every request over HTTP (nothing about S3 is imitated) and can answer 503 or
cut a response body short for the next N GETs of a key, to exercise retries on real sockets.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
import uvicorn

from streamproc.processes import free_port, wait_for_port

HOP_HEADERS = {b"host", b"connection", b"transfer-encoding", b"keep-alive"}


class S3Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.gets: Counter[str] = Counter()
        self.fail_next: Counter[str] = Counter()
        self.cut_next: Counter[str] = Counter()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "GET":
            self.gets[path] += 1
            if self.fail_next[path] > 0:
                self.fail_next[path] -= 1
                await _reply(send, 503, b"<Error><Code>ServiceUnavailable</Code></Error>")
                return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_HEADERS]
        url = (
            self.upstream
            + scope["raw_path"].decode()
            + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        async with httpx.AsyncClient() as client:
            response = await client.request(scope["method"], url, headers=headers, content=body)
        out = [
            (k.encode(), v.encode())
            for k, v in response.headers.items()
            if k.encode().lower() not in HOP_HEADERS
        ]
        content = response.content
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        if scope["method"] == "GET" and self.cut_next[path] > 0:
            self.cut_next[path] -= 1
            await send(
                {
                    "type": "http.response.body",
                    "body": content[: len(content) // 2],
                    "more_body": True,
                }
            )
            raise ConnectionResetError("cutting the body short on purpose")
        await send({"type": "http.response.body", "body": content})

    def start(self) -> S3Proxy:
        config = uvicorn.Config(
            self, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        if not wait_for_port("127.0.0.1", self.port, timeout_s=10):
            raise RuntimeError("S3 proxy did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


async def _reply(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""A real HTTP reverse proxy in front of moto's S3 server that counts and injects faults.

It forwards every request over HTTP (nothing about S3 is imitated) and can answer 503 or
cut a response body short for the next N GETs of a key, to exercise retries on real sockets.
With ``fault_rate`` it also picks GETs at random (seeded) to answer 500 or 503, to reset
the connection after the headers, or to cut the body short. ``complete_gets`` counts the GETs
whose whole body was sent. ``delay_s`` holds every request that long (slow storage).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from typing import Any

import httpx
import uvicorn

from streamproc.local.processes import free_port, wait_for_port

HOP_HEADERS = {b"host", b"connection", b"transfer-encoding", b"keep-alive"}


class S3Proxy:
    def __init__(
        self, upstream: str, fault_rate: float = 0.0, seed: int = 0, delay_s: float = 0.0
    ) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.faults: Counter[str] = Counter()
        self.complete_gets: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()
        self.fail_next: Counter[str] = Counter()
        self.cut_next: Counter[str] = Counter()
        self.corrupt_next: Counter[str] = Counter()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._client: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        fault = None
        if scope["method"] == "GET":
            self.gets[path] += 1
            if self.fail_next[path] > 0:
                self.fail_next[path] -= 1
                await _reply(send, 503, b"<Error><Code>ServiceUnavailable</Code></Error>")
                return
            if self.random.random() < self.fault_rate:
                fault = self.random.choice(("500", "503", "reset", "cut"))
                self.faults[fault] += 1
        if fault in ("500", "503"):
            await _reply(send, int(fault), b"<Error><Code>InternalError</Code></Error>")
            return
        if fault == "reset":
            headers = [(b"content-length", b"1000")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise ConnectionResetError("dropping the connection before the body on purpose")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_HEADERS]
        url = (
            self.upstream
            + scope["raw_path"].decode()
            + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        )
        if self._client is None:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
        response = await self._client.request(scope["method"], url, headers=headers, content=body)
        out = [
            (k.encode(), v.encode())
            for k, v in response.headers.items()
            if k.encode().lower() not in HOP_HEADERS
        ]
        content = response.content
        if scope["method"] == "GET" and self.corrupt_next[path] > 0 and content:
            self.corrupt_next[path] -= 1
            content = bytes([content[0] ^ 0xFF]) + content[1:]  # same length, other bytes
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        if scope["method"] == "GET" and (self.cut_next[path] > 0 or fault == "cut"):
            self.cut_next[path] = max(0, self.cut_next[path] - 1)
            await send(
                {
                    "type": "http.response.body",
                    "body": content[: len(content) // 2],
                    "more_body": True,
                }
            )
            raise ConnectionResetError("cutting the body short on purpose")
        await send({"type": "http.response.body", "body": content})
        if scope["method"] == "GET" and response.status_code == 200:
            self.complete_gets[path] += 1

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

"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, not when the
previous answer came back, so a slow server shows as latency instead of a lower rate.

Latency is measured from each request's scheduled time (no coordinated omission): if every
connection is busy, the wait for one counts. Plain asyncio streams with keep-alive; enough
for a few thousand requests/s on one core, which is what the latency figures ask for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    index: int
    scheduled: float
    began: float
    answered: float
    status: int

    @property
    def latency(self) -> float:
        return self.answered - self.scheduled

    @property
    def lateness(self) -> float:
        """How late the generator itself began the request (before waiting for a free
        connection, which is the server's doing): the generator's own share of ``latency``."""
        return self.began - self.scheduled


def encode(host: str, request: Request) -> bytes:
    head = [f"POST {request.path} HTTP/1.1", f"Host: {host}"]
    head.append(f"Content-Length: {len(request.body)}")
    head += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body


async def _answer_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[Request],
    rate: float,
    connections: int = 64,
) -> list[Answer]:
    """Send ``requests`` at ``rate`` per second over up to ``connections`` keep-alive
    connections; return one answer per request (status 0: the connection failed).

    The pool is last in, first out, so a slow rate keeps reusing one warm connection; one
    the server closed while idle (uvicorn's keep-alive is 5 s) is reopened and the request
    sent again once, as HTTP clients do, instead of counting as a refusal."""
    encoded = [encode(host, request) for request in requests]
    pool: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    pool = asyncio.LifoQueue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    answers: list[Answer] = []
    clock = time.perf_counter  # not loop.time(): uvloop's is per iteration, in whole ms
    started = clock() + 0.05

    async def one(index: int, scheduled: float) -> None:
        began = clock()
        reader, writer = await pool.get()
        status = 0
        for _attempt in range(2):
            if reader.at_eof():  # closed by the server while idle in the pool
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(encoded[index])
                status = await _answer_status(reader)
                break
            except (OSError, asyncio.IncompleteReadError, ValueError):
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        answers.append(Answer(index, scheduled, began, clock(), status))
        pool.put_nowait((reader, writer))

    tasks = []
    for index in range(len(requests)):
        scheduled = started + index / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return sorted(answers, key=lambda answer: answer.index)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

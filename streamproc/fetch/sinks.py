"""Where downloaded files go: a local directory (default) or a destination S3 bucket.

Both write in chunks (memory independent of file size) and make a file visible only once
it is complete: a temporary name renamed into place, or a multipart upload completed. A small
``.sha256`` side file, written last, records ``<sha256> <size>``: it marks the copy complete,
which is how a redelivered or replayed request knows not to download again.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from streamproc.fetch.errors import UnsafeDestination

SHA256_SUFFIX = ".sha256"
PART_SIZE = 8 * 1024 * 1024
"""S3 multipart parts must be at least 5 MiB (but the last); 8 MiB bounds memory per upload."""


@dataclass(frozen=True, slots=True)
class Stored:
    size: int
    sha256: str

    def marker(self) -> bytes:
        return f"{self.sha256} {self.size}\n".encode()

    @classmethod
    def from_marker(cls, data: bytes) -> Stored | None:
        fields = data.decode(errors="replace").split()
        if len(fields) != 2 or not fields[1].isdigit():
            return None
        return cls(size=int(fields[1]), sha256=fields[0])


class SinkWriter(Protocol):
    digest: Any
    """sha256 of every chunk written so far (hashlib); the source checks it against S3's."""

    async def write(self, chunk: bytes) -> None: ...


class Sink(Protocol):
    def describe(self, relative: PurePosixPath) -> str: ...

    async def existing(self, relative: PurePosixPath) -> Stored | None:
        """What a complete earlier copy recorded, or None."""

    def open(self, relative: PurePosixPath) -> contextlib.AbstractAsyncContextManager[SinkWriter]:
        """A writer; the file appears only if the block exits without an exception."""

    async def mark_complete(self, relative: PurePosixPath, stored: Stored) -> None:
        """Record a verified copy (after the file itself is in place)."""


class LocalDirectorySink:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, relative: PurePosixPath) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise UnsafeDestination(f"{relative} resolves outside the sink directory {self.root}")
        return path

    def describe(self, relative: PurePosixPath) -> str:
        return str(self._path(relative))

    async def existing(self, relative: PurePosixPath) -> Stored | None:
        path = self._path(relative)
        _remove_leftovers_of_dead_writers(path)
        marker = _marker_of(path)
        if not marker.is_file() or not path.is_file():
            return None
        return Stored.from_marker(marker.read_bytes())

    async def mark_complete(self, relative: PurePosixPath, stored: Stored) -> None:
        """Written aside and renamed into place: a kill leaves no marker or a whole one. (An
        empty marker left by a kill between create and write made the next worker download
        the file again: the restart test saw a second GET, once in 37 runs.)"""
        path = self._path(relative)
        aside = path.with_name(f".{path.name}.part-{_WRITER}-{uuid.uuid4().hex}{SHA256_SUFFIX}")
        aside.write_bytes(stored.marker())
        os.replace(aside, _marker_of(path))

    @contextlib.asynccontextmanager
    async def open(self, relative: PurePosixPath) -> AsyncIterator[SinkWriter]:
        path = self._path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers_of_dead_writers(path)
        partial = path.with_name(f".{path.name}.part-{_WRITER}-{uuid.uuid4().hex}")
        handle = partial.open("wb")
        try:
            yield _FileWriter(handle)
            await asyncio.to_thread(_flush_and_sync, handle)
            handle.close()
            partial.replace(path)
        finally:
            handle.close()
            partial.unlink(missing_ok=True)


def _marker_of(path: Path) -> Path:
    return path.with_name(f".{path.name}{SHA256_SUFFIX}")


_HOST = socket.gethostname()
_WRITER = f"{_HOST}-{os.getpid()}"


def _remove_leftovers_of_dead_writers(path: Path) -> None:
    """Partial copies of ``path`` left by a killed process on this host (none else touches
    them: a live writer's partial file is its own)."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.part-*"):
        owner = leftover.name.rpartition(".part-")[2].rsplit("-", 2)
        dead = len(owner) == 3 and owner[0] == _HOST and owner[1].isdigit()
        if dead and not _alive(int(owner[1])):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


WRITEBACK_EVERY = 8 * 1024 * 1024
"""Bytes written between two hints to the kernel to start writing the file to disk."""


class _FileWriter:
    """Hashes and writes each chunk in one thread hop: hashlib releases the GIL, so the
    event loop serves the other downloads meanwhile (200 x 5 MB from moto, 8 at a time:
    216-241 MB/s vs 186-217 with the hash on the loop; commit 994147f).

    Every ``WRITEBACK_EVERY`` bytes it asks the kernel to write what it has so far to disk and drop
    it from the page cache, so a large recording is not fsync'd in one go at the end nor left as a
    gigabyte of dirty pages that throttles every writer on the machine (1 GB from moto: 443-451 MB/s
    vs 326-378 without; docs/notes/performance-history.md, "Downloads, 2026-12-02 night")."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._since_writeback = 0
        self.digest = hashlib.sha256()

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._hash_and_write, chunk)

    def _hash_and_write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self._handle.write(chunk)
        self._since_writeback += len(chunk)
        if self._since_writeback >= WRITEBACK_EVERY:
            self._since_writeback = 0
            _start_writeback(self._handle)


def _start_writeback(handle: Any) -> None:
    """POSIX_FADV_DONTNEED makes Linux start writing the file's dirty pages (without
    waiting) and drop the clean ones; the fsync before the rename still makes it durable.
    A no-op where the call does not exist (macOS)."""
    if hasattr(os, "posix_fadvise"):
        handle.flush()
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _flush_and_sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


class S3Sink:
    """Copies into ``s3://bucket/prefix/<relative>`` with multipart uploads."""

    def __init__(self, client: Any, url: str) -> None:
        parsed = urlparse(url)
        self.client = client
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")

    def _key(self, relative: PurePosixPath) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else str(relative)

    def describe(self, relative: PurePosixPath) -> str:
        return f"s3://{self.bucket}/{self._key(relative)}"

    async def existing(self, relative: PurePosixPath) -> Stored | None:
        try:
            response = await self.client.get_object(
                Bucket=self.bucket, Key=self._key(relative) + SHA256_SUFFIX
            )
            async with response["Body"] as body:
                return Stored.from_marker(await body.read())
        except ClientError:
            return None

    async def mark_complete(self, relative: PurePosixPath, stored: Stored) -> None:
        key = self._key(relative) + SHA256_SUFFIX
        await self.client.put_object(Bucket=self.bucket, Key=key, Body=stored.marker())

    @contextlib.asynccontextmanager
    async def open(self, relative: PurePosixPath) -> AsyncIterator[SinkWriter]:
        writer = _MultipartWriter(self.client, self.bucket, self._key(relative))
        try:
            yield writer
            await writer.complete()
        except BaseException:
            await writer.abort()
            raise


class _MultipartWriter:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.digest = hashlib.sha256()

    async def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.buffer += chunk
        while len(self.buffer) >= PART_SIZE:
            await self._upload_part(bytes(self.buffer[:PART_SIZE]))
            del self.buffer[:PART_SIZE]

    async def _upload_part(self, data: bytes) -> None:
        if self.upload_id is None:
            created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        part = await self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        self.parts.append({"ETag": part["ETag"], "PartNumber": number})

    async def complete(self) -> None:
        if self.upload_id is None:
            await self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
        else:
            if self.buffer:
                await self._upload_part(bytes(self.buffer))
                self.buffer.clear()
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )

    async def abort(self) -> None:
        if self.upload_id is not None:
            with contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )


def sink_from_url(url: str, s3_client: Any) -> Sink:
    """``s3://bucket/prefix`` for a bucket, anything else is a local directory."""
    if url.startswith("s3://"):
        return S3Sink(s3_client, url)
    return LocalDirectorySink(url.removeprefix("file://"))

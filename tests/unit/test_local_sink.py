"""The local sink's completion marker: whole or absent, never half written."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import PurePosixPath

from streamproc.fetch import sinks
from streamproc.fetch.sinks import LocalDirectorySink, Stored

RELATIVE = PurePosixPath("daily/rec-1/files/rec-1.mp4")


def test_the_marker_is_renamed_into_place_and_nothing_is_left_aside(tmp_path):
    sink = LocalDirectorySink(tmp_path)
    target = tmp_path / RELATIVE
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * 10)
    stored = Stored(size=10, sha256="ab" * 32)
    asyncio.run(sink.mark_complete(RELATIVE, stored))
    assert asyncio.run(sink.existing(RELATIVE)) == stored
    assert sorted(p.name for p in target.parent.iterdir()) == [".rec-1.mp4.sha256", "rec-1.mp4"]


def test_an_empty_marker_is_not_a_complete_copy(tmp_path):
    """What a kill between creating and writing the marker used to leave behind."""
    sink = LocalDirectorySink(tmp_path)
    target = tmp_path / RELATIVE
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * 10)
    (target.parent / ".rec-1.mp4.sha256").write_bytes(b"")
    assert asyncio.run(sink.existing(RELATIVE)) is None


def test_a_file_written_across_writeback_hints_has_every_byte_and_its_sha256(tmp_path, monkeypatch):
    """The kernel is asked to start writing back (and drop) pages while the file is still
    being written; what lands, and the digest, must be exactly the chunks in order."""
    hints = []
    real_fadvise = getattr(sinks.os, "posix_fadvise", None)  # absent on macOS

    def fadvise(*args: int) -> None:
        hints.append(args)
        if real_fadvise is not None:
            real_fadvise(*args)

    monkeypatch.setattr(sinks, "WRITEBACK_EVERY", 3 * 4096)
    monkeypatch.setattr(sinks.os, "posix_fadvise", fadvise, raising=False)
    chunks = [bytes([n]) * 4096 for n in range(10)]

    async def write_all() -> str:
        async with LocalDirectorySink(tmp_path).open(RELATIVE) as writer:
            for chunk in chunks:
                await writer.write(chunk)
        return writer.digest.hexdigest()

    digest = asyncio.run(write_all())
    assert (tmp_path / RELATIVE).read_bytes() == b"".join(chunks)
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert len(hints) == 3

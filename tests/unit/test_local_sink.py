"""The local sink's completion marker: whole or absent, never half written."""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath

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

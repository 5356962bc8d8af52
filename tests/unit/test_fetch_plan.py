import hashlib
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.fetch.errors import NothingToFetch, UnsafeDestination
from streamproc.fetch.plan import destination, object_keys
from streamproc.fetch.sinks import LocalDirectorySink, Stored

TEMPLATE = "{room}/{filename}"


def request(**fields):
    base = {
        "provider": "daily",
        "recording_id": "r1",
        "room": "room",
        "s3_key": None,
        "tracks": None,
        "filename": None,
    }
    return base | fields


def test_daily_cloud_recording_fetches_its_key():
    assert object_keys(request(s3_key="a/b/c"), TEMPLATE) == ["a/b/c"]


def test_raw_tracks_fetch_every_track():
    tracks = [{"s3_key": "t/1.webm", "size": 3, "kind": "video"}, {"s3_key": "t/2.webm"}]
    assert object_keys(request(s3_key="prefix", tracks=tracks), TEMPLATE) == [
        "t/1.webm",
        "t/2.webm",
    ]


def test_openvidu_key_comes_from_the_template():
    ov = request(provider="openvidu", recording_id="rec", room="room-1", filename="f.mp4")
    assert object_keys(ov, TEMPLATE) == ["room-1/f.mp4"]
    assert object_keys(ov, "recordings/{recording_id}.mp4") == ["recordings/rec.mp4"]
    with pytest.raises(NothingToFetch, match="needs filename"):
        object_keys(ov | {"filename": None}, TEMPLATE)


def test_daily_without_key_or_tracks_has_nothing_to_fetch():
    with pytest.raises(NothingToFetch):
        object_keys(request(), TEMPLATE)


@pytest.mark.parametrize(
    ("recording_id", "key"),
    [
        ("..", "file"),
        ("r1", "../../etc/passwd"),
        ("r1", "/etc/passwd"),
        ("r1", "a/../../b"),
        ("r1", "a\x00b"),
        ("r1", "a//b"),
        ("r1", "C:\\windows"),
        ("a/../../..", "k"),
    ],
)
def test_destinations_that_could_leave_the_sink_are_refused(recording_id, key):
    with pytest.raises(UnsafeDestination):
        destination("daily", recording_id, key)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=80))
def test_any_accepted_destination_stays_inside_the_sink(recording_id, key):
    root = Path("/srv/sink")
    try:
        relative = destination("daily", recording_id, key)
    except UnsafeDestination:
        return
    assert not relative.is_absolute()
    assert ".." not in relative.parts
    resolved = (root / relative).resolve()
    assert resolved.is_relative_to(root)


async def test_local_sink_shows_a_file_only_when_complete(tmp_path):
    sink = LocalDirectorySink(tmp_path)
    relative = PurePosixPath("daily/r1/file.mp4")
    with pytest.raises(RuntimeError):
        async with sink.open(relative) as writer:
            await writer.write(b"half")
            raise RuntimeError("connection reset")
    assert list(tmp_path.rglob("*")) == [tmp_path / "daily", tmp_path / "daily" / "r1"]
    assert await sink.existing(relative) is None
    async with sink.open(relative) as writer:
        await writer.write(b"who")
        await writer.write(b"le")
    assert (tmp_path / relative).read_bytes() == b"whole"
    assert writer.digest.hexdigest() == hashlib.sha256(b"whole").hexdigest()
    assert await sink.existing(relative) is None  # no marker yet: not known to be verified
    await sink.mark_complete(relative, Stored(size=5, sha256="ab" * 32))
    assert await sink.existing(relative) == Stored(size=5, sha256="ab" * 32)


def _pid_of_a_finished_process() -> int:
    import subprocess
    import sys

    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    return int(subprocess.run(command, capture_output=True, check=True).stdout)


async def test_local_sink_removes_partial_copies_of_dead_writers_only(tmp_path):
    import os
    import socket

    dead_pid = _pid_of_a_finished_process()
    folder = tmp_path / "daily" / "r1"
    folder.mkdir(parents=True)
    host = socket.gethostname()
    dead = folder / f".file.mp4.part-{host}-{dead_pid}-abc"
    live = folder / f".file.mp4.part-{host}-{os.getpid()}-def"
    elsewhere = folder / f".file.mp4.part-other-host-{dead_pid}-0f"
    for path in (dead, live, elsewhere):
        path.write_bytes(b"half")
    assert await LocalDirectorySink(tmp_path).existing(PurePosixPath("daily/r1/file.mp4")) is None
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, elsewhere.name])


async def test_a_symlink_in_the_sink_that_leads_outside_is_refused(tmp_path):
    root, outside = tmp_path / "sink", tmp_path / "elsewhere"
    (root / "daily").mkdir(parents=True)
    outside.mkdir()
    (root / "daily" / "r1").symlink_to(outside)
    sink = LocalDirectorySink(root)
    with pytest.raises(UnsafeDestination, match="resolves outside the sink"):
        async with sink.open(PurePosixPath("daily/r1/file.mp4")) as writer:
            await writer.write(b"x")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("encoded", ["%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc", "%00"])
def test_url_encoded_segments_are_taken_literally_and_stay_inside(encoded):
    relative = destination("daily", "r1", encoded)
    assert ".." not in relative.parts
    assert (Path("/srv/sink") / relative).resolve().is_relative_to(Path("/srv/sink"))

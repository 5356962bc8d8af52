"""`streamproc up --demo` as a user runs it: report printed, Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streamproc.local.processes import free_port
from streamproc.logs import LIBRARIES

pytestmark = pytest.mark.integration


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_up_with_demo_reports_and_stops_cleanly_on_sigint(tmp_path):
    env = {
        **os.environ,
        "STREAMPROC_EDGE_PORT": str(free_port()),
        "STREAMPROC_WORKER_WEB_PORT": str(free_port()),
        "STREAMPROC_SESSION_TIMEOUT_S": "6",
    }
    for name in ("STREAMPROC_KAFKA_BOOTSTRAP", "STREAMPROC_S3_ENDPOINT_URL"):
        env.pop(name, None)
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "streamproc", "up", "--demo", "--broker-port", str(free_port())],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while not re.search(
            r"recordings\.dlq: \d+ dead letters", log_path.read_text(errors="replace")
        ):
            assert up.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no demo report within 240 s"
            time.sleep(1)
        output = log_path.read_text(errors="replace")
        assert "streamproc is up" in output
        assert "recordings.state: 200 recordings; failed=1, finished=199" in output
        assert "recordings.downloads: 200 files" in output
        assert "recordings.dlq: 0 dead letters" in output
        library_info = re.findall(rf"^\S+ \S+ INFO ({'|'.join(LIBRARIES)})\b.*$", output, re.M)
        assert library_info == [], library_info[:5]
        before_report = output.split("== demo report ==")[0].splitlines()
        progress = ("sending webhooks:", "files downloaded by the worker:")
        assert len([line for line in before_report if not line.startswith(progress)]) < 40
        status = subprocess.run(
            [sys.executable, "-m", "streamproc", "status", "--json"],
            cwd=tmp_path,  # finds the running `up` through its stack file
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        report = orjson.loads(status.stdout)
        assert report["recordings"] == {"failed": 1, "finished": 199}
        assert (report["downloads"], report["dead_letters"]) == (200, 0)
        assert (report["edge"], report["worker"]) == ("up", "up")
        descendants = children_of(up.pid)
        assert len(descendants) >= 3  # broker, S3 server, edge, worker
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.terminate()  # lets it stop its children; they also die with it
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
    time.sleep(0.5)
    left = [pid for pid in descendants if alive(pid)]
    assert left == [], f"still running after Ctrl-C: {left}"
    assert not (tmp_path / ".streamproc" / "up.json").exists()

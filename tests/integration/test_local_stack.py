"""`streamproc up --demo` as a user runs it: report printed, Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import orjson
import pytest

from streamproc.local.processes import free_port
from streamproc.logs import LIBRARIES

from helpers import alive, children_of

pytestmark = pytest.mark.integration


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

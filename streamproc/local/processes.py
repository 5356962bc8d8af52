"""Child processes the local stack and the tests run: ports, start, stop, signals."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies, so a killed
    supervisor (or test run) leaves no broker, S3 server, edge or worker behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


class ServerProcess:
    """A server child in its own session, logging to a file, ready once its port listens."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.env = dict(env or {})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def start(self, command: Sequence[str], timeout_s: float) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if self.log_path is not None and self._log is None:
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own fixed commands
            list(command),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        if not wait_for_port(self.host, self.port, timeout_s):
            self.stop()
            raise RuntimeError(
                f"{self.name} did not listen on {self.host}:{self.port} within {timeout_s} s"
            )

    def stop(self) -> None:
        """Terminate it (safe to call twice)."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def graceful_termination() -> Iterator[None]:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so ``finally`` blocks stop children.

    SIGINT is set explicitly because a shell starts background jobs with it ignored.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

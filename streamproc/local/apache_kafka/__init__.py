"""Apache Kafka from its Maven Central jars: a single KRaft node or a 3-node cluster on loopback.

The broker users deploy, started for the tests and the bench without Docker or a tarball:
Maven resolves ``pom.xml`` beside this file (the tested version) into a cache folder once,
then each node is ``java kafka.Kafka server.properties`` on free ports with its log on disk,
so a killed node restarts with its data. Needs ``java`` (17+) and ``mvn``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streamproc.local.processes import die_with_parent, free_port, stop_process

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG_CONFIG = HERE / "log4j2.properties"
TOOLS_LOG_CONFIG = HERE / "tools-log4j2.properties"
READY_LINE = b"Kafka Server started"


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or the jars could not be resolved: Kafka cannot run here."""


class KafkaStartError(RuntimeError):
    """A node did not say it had started within its time."""


def kafka_version() -> str:
    """The Kafka version the pom pins (the one the tests run)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if found is None:
        raise KafkaUnavailable(f"{POM} names no kafka.version")
    return found.group(1)


def jars_folder() -> Path:
    """The cache of the broker's jars, resolved by Maven on first use.

    ``STREAMPROC_KAFKA_JARS`` names the folder; by default ``~/.cache/streamproc/kafka-<v>``.
    A folder is complete once its ``.resolved`` stamp exists, so an interrupted download is
    resolved again rather than half used.
    """
    version = kafka_version()
    default = Path.home() / ".cache" / "streamproc" / f"kafka-{version}"
    folder = Path(os.environ.get("STREAMPROC_KAFKA_JARS") or default)
    stamp = folder / ".resolved"
    resolved = stamp.is_file() and stamp.read_text() == POM.read_text()
    missing = [tool for tool in ("java", "mvn")[: 1 if resolved else 2] if not shutil.which(tool)]
    if missing:
        raise KafkaUnavailable(f"{' and '.join(missing)} not found: Apache Kafka cannot run here")
    if resolved:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    command = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    command.append(f"-DoutputDirectory={folder / 'lib'}")
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise KafkaUnavailable("Maven could not resolve Kafka's jars:\n" + "\n".join(tail))
    stamp.write_text(POM.read_text())
    return folder


def classpath() -> str:
    return str(jars_folder() / "lib" / "*")


def run_tool(main_class: str, *args: str, timeout_s: float = 60) -> str:
    """Run one of Kafka's own command-line tools (e.g. ConsumerGroupCommand); its stdout."""
    command = ["java", f"-Dlog4j2.configurationFile={TOOLS_LOG_CONFIG}", "-cp", classpath()]
    done = subprocess.run(  # noqa: S603 - our own fixed commands
        [*command, main_class, *args], capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"{main_class} {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


@dataclass(frozen=True)
class NodePorts:
    node_id: int
    port: int
    controller_port: int


class KafkaNode:
    """One combined broker/controller process; ``start``/``stop``/``kill`` may be repeated."""

    def __init__(
        self,
        ports: NodePorts,
        voters: str,
        folder: Path,
        cluster_id: str,
        overrides: dict[str, str],
        host: str = "127.0.0.1",
    ) -> None:
        self.ports = ports
        self.host = host
        self.folder = folder
        self.log_path = folder / "kafka.log"
        self.cluster_id = cluster_id
        self.process: subprocess.Popen[bytes] | None = None
        self.properties = folder / "server.properties"
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(ports.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{host}:{ports.port},CONTROLLER://{host}:{ports.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{ports.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(folder / "data"),
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            **overrides,
        }
        folder.mkdir(parents=True, exist_ok=True)
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports.port}"

    def format(self) -> None:
        """Write the KRaft metadata for the cluster id into the log directory (once)."""
        if (self.folder / "data" / "meta.properties").exists():
            return
        run_tool(
            "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(self.properties)
        )

    def launch(self) -> None:
        """Start the process without waiting for it (a cluster's nodes must start together)."""
        if self.process is not None and self.process.poll() is None:
            return
        self._ready_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own fixed commands
                [  # noqa: S607 - java from PATH, like mvn
                    "java",
                    "-Xms128m",
                    "-Xmx512m",
                    "-XX:+UseSerialGC",
                    f"-Dlog4j2.configurationFile={LOG_CONFIG}",
                    "-cp",
                    classpath(),
                    "kafka.Kafka",
                    str(self.properties),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise KafkaStartError(
                    f"Kafka node {self.ports.node_id} exited; see {self.log_path}"
                )
            with self.log_path.open("rb") as log:
                log.seek(self._ready_from)
                if READY_LINE in log.read():
                    return
            time.sleep(0.1)
        raise KafkaStartError(
            f"Kafka node {self.ports.node_id} not started in {timeout_s} s: {self.log_path}"
        )

    def start(self, timeout_s: float = 60) -> None:
        self.launch()
        self.wait_ready(timeout_s)

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL if it has not exited in time."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout_s)

    def kill(self) -> None:
        """SIGKILL: the node dies with no shutdown; its log stays on disk for a restart."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()


def _new_cluster_id() -> str:
    return run_tool("kafka.tools.StorageTool", "random-uuid").strip()


class KafkaCluster:
    """``size`` KRaft nodes on loopback, each broker and controller, all voters.

    With one node it is the single broker of the tests; with three, replicated topics
    (RF 3, ``min.insync.replicas=2``) survive one dead node.
    """

    def __init__(self, folder: Path, size: int = 1, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.size = size
        ports = [NodePorts(i + 1, free_port(host), free_port(host)) for i in range(size)]
        voters = ",".join(f"{p.node_id}@{host}:{p.controller_port}" for p in ports)
        replication = str(min(size, 3))
        overrides = {
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": str(min(size, 2)),
            "default.replication.factor": replication,
            "min.insync.replicas": str(min(size, 2)),
        }
        cluster_id = _new_cluster_id()
        self.nodes = [
            KafkaNode(p, voters, folder / f"node-{p.node_id}", cluster_id, overrides, host)
            for p in ports
        ]
        self.host = host

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def port(self) -> int:
        return self.nodes[0].ports.port

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.nodes[0].process

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def start(self, timeout_s: float = 90) -> None:
        for node in self.nodes:
            node.format()
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(timeout_s)

    def stop(self) -> None:
        """Stop every node (safe to call twice); the logs stay on disk."""
        for node in reversed(self.nodes):
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class KafkaBroker(KafkaCluster):
    """A single Kafka node: what the tests and the bench run where a user's Kafka would be."""

    def __init__(self, folder: Path, host: str = "127.0.0.1") -> None:
        super().__init__(folder, size=1, host=host)

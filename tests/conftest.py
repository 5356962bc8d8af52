"""Real servers for the test session on free ports: the brokers (the embedded Tansu and Apache
Kafka from its Maven jars) and moto's S3 server.

``broker`` is Tansu unless a test is marked ``both_brokers``: then it runs once per broker,
with ids ``[tansu]`` and ``[kafka]``. Where Java or Maven is missing the Kafka runs skip and
say why, unless ``STREAMPROC_REQUIRE_KAFKA=1`` (CI) makes that an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproc.local.apache_kafka import KafkaBroker, KafkaUnavailable, jars_folder
from streamproc.local.broker import EmbeddedBroker
from streamproc.local.s3 import EmbeddedS3

from helpers import broker_on_s3

BROKERS = ("tansu", "kafka")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker("both_brokers")
    if marked is None:
        return
    if "broker" in metafunc.fixturenames:
        metafunc.parametrize("broker", BROKERS, indirect=True, scope="session")
    elif "broker_kind" in metafunc.fixturenames:
        metafunc.parametrize("broker_kind", BROKERS)


def require_kafka() -> None:
    """Skip (or, in CI, fail) where Apache Kafka cannot run on this machine."""
    try:
        jars_folder()
    except KafkaUnavailable as exc:
        if os.environ.get("STREAMPROC_REQUIRE_KAFKA") == "1":
            pytest.fail(f"Apache Kafka is required here (STREAMPROC_REQUIRE_KAFKA=1): {exc}")
        pytest.skip(f"Apache Kafka cannot run here: {exc}")


@pytest.fixture(scope="session")
def kafka_available() -> None:
    """For tests that start Kafka nodes of their own: skip (or fail in CI) where none can run."""
    require_kafka()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


@pytest.fixture(scope="session")
def kafka(kafka_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One Apache Kafka node for the session (KRaft, its log on disk)."""
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as running:
        yield running


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> EmbeddedBroker | KafkaBroker:
    """The session's broker: Tansu, or each broker in turn for tests marked ``both_brokers``."""
    return request.getfixturevalue(getattr(request, "param", "tansu"))


@pytest.fixture
def broker_kind(request: pytest.FixtureRequest) -> str:
    """For ``both_brokers`` tests that start a broker of their own: which one."""
    return getattr(request, "param", "tansu")


@pytest.fixture
def restartable_broker(
    request: pytest.FixtureRequest, broker_kind: str, s3_endpoint: str, tmp_path: Path
):
    """A broker of this test's own whose log survives ``stop``/``start``: Tansu keeping its
    log in S3 (moto), or a Kafka node with its log on disk."""
    if broker_kind == "kafka":
        request.getfixturevalue("kafka_available")
        running = KafkaBroker(tmp_path / "kafka")
        running.start()
        try:
            yield running
        finally:
            running.stop()
    else:
        with broker_on_s3(s3_endpoint, tmp_path) as running:
            yield running


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 API server, spoken to over HTTP like any S3."""
    server = EmbeddedS3(log_path=tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server.url
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that runs on Kafka ``kafka``, so ``-m "not kafka"`` leaves them out,
    and the Tansu run of a ``long_on_tansu`` test ``long``."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("long_on_tansu") and params.get("broker") == "tansu":
            item.add_marker(pytest.mark.long)
        on_kafka = "kafka" in (params.get("broker"), params.get("broker_kind"))
        fixtures = getattr(item, "fixturenames", ())
        if on_kafka or "kafka" in fixtures or "kafka_available" in fixtures:
            item.add_marker(pytest.mark.kafka)

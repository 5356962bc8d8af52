"""Real servers for the test session: the Tansu broker and moto's S3 server, on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamproc.broker import EmbeddedBroker
from streamproc.embedded_s3 import EmbeddedS3


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 API server, spoken to over HTTP like any S3."""
    server = EmbeddedS3(log_path=tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server.url
    finally:
        server.stop()

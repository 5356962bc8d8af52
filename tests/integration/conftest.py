"""An edge process per test module, talking to the session's real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from s3proxy import S3Proxy

from streamproc.local.broker import EmbeddedBroker
from streamproc.local.processes import stop_process

from helpers import RunningEdge, start_edge


@pytest.fixture(scope="module")
def edge(broker: EmbeddedBroker) -> Iterator[RunningEdge]:
    running = start_edge(broker.bootstrap, f"raw-{uuid.uuid4().hex[:8]}")
    try:
        yield running
    finally:
        stop_process(running.process)


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[S3Proxy]:
    proxy = S3Proxy(s3_endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()

"""``STREAMPROC_PROCESSING_GUARANTEE=exactly_once`` needs Kafka transactions: a worker asks
the broker at start and, where it cannot run them (the embedded Tansu), exits 2 with one line
that says so, instead of crashing at its first transaction. Kafka gives a transactional
producer its id."""

from __future__ import annotations

import uuid

import pytest

from streamproc.kafka.transactions import transactions_refused

from helpers import broker_name, start_worker, worker_env

pytestmark = pytest.mark.integration


@pytest.mark.both_brokers
async def test_the_broker_says_whether_it_runs_transactions(broker):
    refused = await transactions_refused(broker.bootstrap, f"probe-{uuid.uuid4().hex[:6]}")
    if broker_name(broker) == "tansu":
        assert refused is not None and "InitProducerId" in refused
    else:
        assert refused is None


async def test_a_worker_refuses_exactly_once_on_tansu(broker, tmp_path):
    prefix = f"eos-{uuid.uuid4().hex[:6]}"
    env = worker_env(
        broker.bootstrap,
        "http://127.0.0.1:9",
        prefix,
        tmp_path / "sink",
        STREAMPROC_PROCESSING_GUARANTEE="exactly_once",
    )
    worker = start_worker(env, tmp_path / "worker.log")
    assert worker.process.wait(timeout=60) == 2
    output = worker.log_path.read_text()
    assert "exactly_once needs Kafka transactions" in output
    assert "use at_least_once" in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output

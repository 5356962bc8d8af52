"""Whether a broker can run Kafka transactions, asked before a worker relies on them.

A transactional producer starts with ``InitProducerId`` for its transactional id; a broker
without a transaction coordinator refuses it (the embedded Tansu answers UNKNOWN_SERVER_ERROR,
as it does for an idempotent producer's id: ``tests/integration/test_transactions_check.py``).
Asking at start-up turns what would be a crash at the first transaction into one line.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError


async def transactions_refused(bootstrap: str, transactional_id: str) -> str | None:
    """None if the broker gives ``transactional_id`` a producer id; else why it did not.
    Raises what an unreachable broker raises (``KafkaConnectionError``), for the caller's
    retry."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=transactional_id, request_timeout_ms=10_000
    )
    sender_log = logging.getLogger("aiokafka.producer.sender")
    level = sender_log.level
    sender_log.setLevel(logging.CRITICAL)  # the refusal is ours to say, in one line
    try:
        await producer.start()
    except KafkaConnectionError:
        raise
    except KafkaError as exc:
        return f"InitProducerId for a transactional id failed: {exc!r}"
    finally:
        sender_log.setLevel(level)
        await producer.stop()
    return None

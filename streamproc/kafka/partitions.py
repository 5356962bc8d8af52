"""Which partition a key belongs on: Kafka's default partitioner (murmur2), as the Java
client, aiokafka and so the edge and the worker's re-keyed topic use it.

The worker keeps each recording's state on this partition; a record another producer put
elsewhere (librdkafka's default hashes with CRC32) is re-keyed onto it.

aiokafka's murmur2 is pure Python, ~5 us for a recording id, and the worker hashes each
recording's key several times per event (the re-key check, the state, lifecycle and changelog
sends): the hashes of recent keys are kept (``KeyHashPartitioner``, also the producers'
partitioner).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from aiokafka.partitioner import murmur2

RECENT_KEYS = 16_384
"""Hashes kept (~200 bytes each): more than the recordings a worker has in flight."""


@lru_cache(maxsize=RECENT_KEYS)
def _positive_murmur2(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    return _positive_murmur2(key) % partitions


class KeyHashPartitioner:
    """aiokafka's ``DefaultPartitioner`` with the recent keys' hashes kept (same partitions)."""

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Any) -> int:
        if key is None:
            return random.choice(available or all_partitions)  # noqa: S311 - spreading, not secrets
        return all_partitions[_positive_murmur2(key) % len(all_partitions)]

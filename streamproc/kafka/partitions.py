"""Which partition a key belongs on: Kafka's default partitioner (murmur2), as the Java
client, aiokafka and so the edge and the worker's re-keyed topic use it.

The worker keeps each recording's state on this partition; a record another producer put
elsewhere (librdkafka's default hashes with CRC32) is re-keyed onto it.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER = DefaultPartitioner()


def partition_for(key: bytes, partitions: int) -> int:
    return _PARTITIONER(key, range(partitions), None)

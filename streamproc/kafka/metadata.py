"""Which partitions a topic has, asked of the cluster (not of a client's cached metadata).

aiokafka's ``partitions_for_topic`` answers from the metadata the client keeps, which holds
only topics it subscribed to or produced to, and ``topics()`` fetches every topic's metadata
without keeping it. Tansu answers a metadata request for no topics with every topic, so
reading ``partitions_for_topic`` after ``topics()`` worked there; Apache Kafka answers it with
none, and replay, status and the demo found no partitions
(``tests/integration/test_broker_facts.py::test_partitions_of_a_topic_the_client_never_used``).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions in order; empty if the topic does not exist."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]

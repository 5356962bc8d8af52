"""The worker's topics: names from settings, partitions matched to the raw topic.

Every topic the fold or fetch agents read or write per recording has as many partitions as
the raw topic, so Faust co-partitions them: a recording's raw events, its table entry and
its fetch requests all live in the same partition number on the same worker.
"""

from __future__ import annotations

from typing import Any

from mode.utils.times import want_seconds

from streamproc.kafka.topics import Replication, TopicSpec, ensure_topics, partition_count
from streamproc.settings import Settings

COMPACTED = {"cleanup.policy": "compact"}


def rekeyed_topic(settings: Settings) -> str:
    """Internal: raw records another producer keyed by something else than the recording id."""
    return f"{settings.app_id}-rekeyed"


def instances_topic(settings: Settings) -> str:
    """Internal: events keyed by Daily's instance id, and the links to their recordings."""
    return f"{settings.app_id}-instances"


def fetch_retry_topics(settings: Settings) -> list[str]:
    """Internal: fetch requests waiting for their next try, one topic per wait
    (``fetch_retry_delays_s``), so that a long wait never holds up a short one."""
    return [
        f"{settings.app_id}-fetch-retry-{level}"
        for level in range(1, len(settings.fetch_retry_delays_s) + 1)
    ]


def fetch_retry_group(settings: Settings) -> str:
    """The consumer group of the retry relay (``fetch/retries.py``)."""
    return f"{settings.app_id}-fetch-retry"


def fetch_group(settings: Settings) -> str:
    """The consumer group of ``fetch`` workers (``STREAMPROC_WORKER_ROLE``): a group of its
    own, because Faust's assignor gives every member of a group a share of every topic the
    group reads, whatever that member's agents subscribe to."""
    return f"{settings.app_id}-fetch"


def group_id(settings: Settings) -> str:
    """The consumer group (and Faust app id) of a worker with this role."""
    return fetch_group(settings) if settings.worker_role == "fetch" else settings.app_id


def worker_topics(settings: Settings, partitions: int) -> list[TopicSpec]:
    return [
        TopicSpec(settings.raw_topic, partitions),
        TopicSpec(rekeyed_topic(settings), partitions),
        TopicSpec(instances_topic(settings), partitions),
        TopicSpec(settings.state_topic, partitions, COMPACTED),
        TopicSpec(settings.lifecycle_topic, partitions),
        TopicSpec(settings.fetch_topic, partitions),
        TopicSpec(settings.downloads_topic, partitions),
        TopicSpec(settings.dlq_topic, partitions),
        *(TopicSpec(topic, partitions) for topic in fetch_retry_topics(settings)),
    ]


async def prepare_topics(settings: Settings) -> int:
    """Create what is missing; return the raw topic's partition count, which all follow."""
    existing = await partition_count(settings.kafka_bootstrap, settings.raw_topic)
    partitions = existing or settings.raw_topic_partitions
    await ensure_topics(
        settings.kafka_bootstrap,
        worker_topics(settings, partitions),
        replication=Replication.of(settings),
    )
    return partitions


def faust_topics(app: Any) -> list[TopicSpec]:
    """The topics Faust declares for itself as it starts (each table's changelog, the
    assignor's leader topic), with the partitions and cleanup policy Faust gives them.

    Created before Faust starts, they are in its consumer's first view of the cluster. Left to
    Faust, they are created after that view was taken; if the broker is away while the
    consumer refreshes it, the first assignment runs on the old view, leaves the changelogs
    out ("Ignoring missing topic") and the first table write fails with PartitionsMismatch
    (docs/notes/durability.md section 10).
    """
    topics = [table.changelog_topic for table in app.tables.values()]
    topics.append(app._leader_assignor._leader_topic)
    return [
        TopicSpec(
            topic.get_topic_name(),
            topic.partitions or app.conf.topic_partitions,
            _cleanup_config(topic),
        )
        for topic in topics
    ]


def _cleanup_config(topic: Any) -> dict[str, str]:
    """Faust's topic config for ``topic`` (as its Kafka transport writes it)."""
    flags = (("compact", topic.compacting), ("delete", topic.deleting))
    policies = [name for name, on in flags if on]
    config = {"cleanup.policy": ",".join(policies)} if policies else {}
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
    return {**config, **{key: str(value) for key, value in (topic.config or {}).items()}}

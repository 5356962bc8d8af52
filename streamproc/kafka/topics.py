"""Create the topics a component needs, with their partition counts and configs, if missing."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamproc.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Replication:
    """How the topics streamproc creates are replicated: one copy locally; on a production
    cluster RF 3 with ``min.insync.replicas=2``, so an acks=all write survives a dead broker
    and a second dead broker refuses writes instead of keeping one copy."""

    factor: int = 1
    min_insync: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> Replication:
        return cls(settings.topic_replication_factor, settings.topic_min_insync_replicas)

    def config(self) -> dict[str, str]:
        return {} if self.min_insync is None else {"min.insync.replicas": str(self.min_insync)}


async def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    timeout_s: float = 10,
    replication: Replication = Replication(),
) -> None:
    """Create every missing topic; existing topics are left exactly as they are."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=replication.factor,
                topic_configs={**replication.config(), **s.config},
            )
            for s in specs
            if s.name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.debug("topics created concurrently by another process")
            log.info("created topics %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()


async def partition_count(bootstrap: str, topic: str, timeout_s: float = 10) -> int | None:
    """How many partitions ``topic`` has, or None if it does not exist."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return None
        [description] = await admin.describe_topics([topic])
        return len(description["partitions"])
    finally:
        await admin.close()

"""``streamproc status``: how a running pipeline is doing, read from its topics and endpoints.

Everything comes from what any operator can reach: topic ends read by a fetch (the embedded
broker's ListOffsets is short, ``streamproc.kafka.offsets``), the worker group's committed
offsets, the state, downloads and dead-letter topics read back, and the edge's ``/readyz``
and the worker's ``/metrics``. It reads the state and downloads topics whole, which suits a
local or modest pipeline; at scale the worker's Prometheus metrics answer the same questions.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass, field

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamproc.kafka.coordinator import start_group_reader
from streamproc.kafka.metadata import topic_partitions
from streamproc.kafka.offsets import log_ends
from streamproc.kafka.reading import read_to_end
from streamproc.settings import Settings
from streamproc.worker.topics import fetch_group, fetch_retry_group, fetch_retry_topics

NEWEST_REASONS = 5
HEALTH_TIMEOUT_S = 1.0


@dataclass
class TopicStatus:
    role: str
    topic: str
    messages: int
    """The sum of the partitions' log ends (records ever written, on uncompacted topics)."""
    lag: int | None = None
    """How far the worker group's committed offsets are behind; None where it consumes none."""


@dataclass
class PipelineStatus:
    bootstrap: str
    topics: list[TopicStatus]
    recordings: dict[str, int]
    downloads: int
    download_failures: int
    dead_letters: int
    newest_dead_letters: list[dict[str, str]] = field(default_factory=list)
    dead_letters_by_stage: dict[str, int] = field(default_factory=dict)
    retries_waiting: int = 0
    """Fetch requests in the retry topics that the relay has not sent back yet."""
    edge: str = "unknown"
    worker: str = "unknown"

    def as_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


async def gather_status(settings: Settings, edge_url: str, worker_url: str) -> PipelineStatus:
    roles = {
        "raw": settings.raw_topic,
        "state": settings.state_topic,
        "lifecycle": settings.lifecycle_topic,
        "fetch requests": settings.fetch_topic,
        "downloads": settings.downloads_topic,
        "dead letters": settings.dlq_topic,
    }
    retry_topics = fetch_retry_topics(settings)
    for topic, delay in zip(retry_topics, settings.fetch_retry_delays_s, strict=True):
        roles[f"retry in {delay:g}s"] = topic
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    bootstrap = settings.kafka_bootstrap
    group = await start_group_reader(bootstrap, settings.app_id)
    fetchers = await start_group_reader(bootstrap, fetch_group(settings))
    relay = await start_group_reader(bootstrap, fetch_retry_group(settings))
    # who commits on each topic the pipeline consumes (fetch requests: the worker's group, or
    # fetch workers' own)
    consumed = {
        settings.raw_topic: (group,),
        settings.fetch_topic: (group, fetchers),
        **{topic: (relay,) for topic in retry_topics},
    }
    try:
        partitions = {topic: await topic_partitions(reader, topic) for topic in roles.values()}
        ends = await log_ends(reader, [tp for tps in partitions.values() for tp in tps])
        topics = []
        for role, topic in roles.items():
            lag = None
            if topic in consumed and partitions[topic]:
                readers = consumed[topic]
                committed = [
                    max([await r.committed(tp) or 0 for r in readers]) for tp in partitions[topic]
                ]
                lag = sum(ends[tp] for tp in partitions[topic]) - sum(committed)
            topics.append(TopicStatus(role, topic, sum(ends[tp] for tp in partitions[topic]), lag))
        states = await _read(reader, partitions[settings.state_topic], ends)
        latest = {m["recording_id"]: m["status"] for m in states}
        downloads = await _read(reader, partitions[settings.downloads_topic], ends)
        dead_letters = await _read(reader, partitions[settings.dlq_topic], ends)
    finally:
        await relay.stop()
        await fetchers.stop()
        await group.stop()
        await reader.stop()
    edge, worker = await asyncio.gather(_health(edge_url), _health(worker_url))
    newest = sorted(dead_letters, key=lambda m: m.get("dead_lettered_at", ""))[-NEWEST_REASONS:]
    return PipelineStatus(
        bootstrap=settings.kafka_bootstrap,
        topics=topics,
        recordings=dict(sorted(Counter(latest.values()).items())),
        downloads=len({m["event_id"] for m in downloads}),
        download_failures=len({m["event_id"] for m in dead_letters if m.get("stage") == "fetch"}),
        dead_letters=sum(ends[tp] for tp in partitions[settings.dlq_topic]),
        newest_dead_letters=[
            {k: str(m.get(k, "")) for k in ("dead_lettered_at", "stage", "reason")} for m in newest
        ],
        dead_letters_by_stage=dict(
            sorted(Counter(str(m.get("stage")) for m in dead_letters).items())
        ),
        retries_waiting=sum(t.lag or 0 for t in topics if t.topic in retry_topics),
        edge=edge,
        worker=worker,
    )


async def _read(
    reader: AIOKafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int]
) -> list[dict]:
    """Every message of ``tps`` up to ``ends``, decoded; a message that is not JSON is skipped."""
    messages = []
    async for record in read_to_end(reader, tps, stops=ends):
        if record.value is not None:
            try:
                messages.append(orjson.loads(record.value))
            except orjson.JSONDecodeError:
                continue
    return messages


async def _health(url: str) -> str:
    try:
        async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return f"unreachable ({url})"
    return "up" if response.status_code == 200 else f"answering {response.status_code} ({url})"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name}={count}" for name, count in counts.items())


def render(status: PipelineStatus) -> str:
    lines = [f"streamproc status  (kafka {status.bootstrap})", ""]
    lines.append(f"  {'topic':<34} {'role':<15} {'messages':>9} {'worker lag':>11}")
    for t in status.topics:
        lag = "" if t.lag is None else str(t.lag)
        lines.append(f"  {t.topic:<34} {t.role:<15} {t.messages:>9} {lag:>11}")
    total = sum(status.recordings.values())
    by_status = _counts(status.recordings)
    lines += [
        "",
        f"  recordings      : {total}" + (f"  ({by_status})" if by_status else ""),
        f"  downloads       : {status.downloads} done, {status.download_failures} failed",
        f"  retries waiting : {status.retries_waiting}",
        f"  dead letters    : {status.dead_letters}"
        + (f"  ({by_stage})" if (by_stage := _counts(status.dead_letters_by_stage)) else ""),
    ]
    for m in status.newest_dead_letters:
        lines.append(f"    {m['dead_lettered_at']}  {m['stage']}: {m['reason']}")
    lines += [f"  edge            : {status.edge}", f"  worker          : {status.worker}"]
    return "\n".join(line.rstrip() for line in lines)

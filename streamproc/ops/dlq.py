"""``streamproc dlq``: dead letters an operator can list, inspect and send back.

A dead letter (``core/derived.py``) holds the exact bytes, key and headers of what failed,
where it came from and why. ``redrive`` sends it back where it failed: a raw event to the
raw topic (its bytes, key and own headers, without the worker's internal ones), a fetch
request to the fetch-requests topic, each with two headers: which dead letter it came from
and its attempt (``streamproc-attempt``, one more than the dead letter's). If it fails
again, the worker dead-letters it again with that attempt; nothing is ever resent by itself.

What was sent back is written to a compacted ledger topic, ``<dead-letter topic>.redriven``,
keyed by the dead letter's id, after the resend was acknowledged, so a second redrive of the
same dead letters sends nothing again. (A crash between the two sends one dead letter again:
the fold ignores an event id it applied, and the fetcher a file it stored.)
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamproc.core.derived import ATTEMPT_HEADER
from streamproc.kafka.metadata import topic_partitions
from streamproc.kafka.partitions import KeyHashPartitioner
from streamproc.kafka.reading import read_to_end
from streamproc.kafka.topics import Replication, TopicSpec, ensure_topics
from streamproc.ops.progress import progress_bar
from streamproc.settings import Settings

REDRIVEN_FROM_HEADER = "streamproc-redriven-from"
"""On a record ``redrive`` sent: the id of the dead letter it came from."""
INTERNAL_HEADERS = ("source-", "streamproc-", "linked-recording-id")
"""Header names (prefixes) the worker adds as it routes a record; a resend starts clean."""
RAW_STAGES = frozenset({"decode", "join", "fold"})
"""Stages whose dead letters are raw events (``fetch``'s are fetch requests)."""
EXAMPLES = 3


def ledger_topic(settings: Settings) -> str:
    """Dead letters already sent back, by id (compacted)."""
    return f"{settings.dlq_topic}.redriven"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    """Where it is in the dead-letter topic (``REF`` may be ``partition:offset``)."""
    message: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def event_id(self) -> str:
        return str(self.message.get("event_id", ""))

    @property
    def stage(self) -> str:
        return str(self.message.get("stage", "?"))

    @property
    def reason(self) -> str:
        return str(self.message.get("reason", ""))

    @property
    def attempt(self) -> int:
        return int(self.message.get("attempt") or 1)

    @property
    def at(self) -> float:
        return float(self.message.get("dead_lettered_at") or 0.0)

    def headers(self) -> dict[str, bytes]:
        return {
            name: base64.b64decode(value)
            for name, value in (self.message.get("headers") or {}).items()
        }


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters: all filters must hold; ``refs`` (ids or ``partition:offset``),
    when given, name them one by one."""

    since: datetime | None = None
    stage: str | None = None
    reason: str | None = None
    """Case-insensitive text the reason contains."""
    refs: tuple[str, ...] = ()

    @property
    def narrows(self) -> bool:
        return any((self.since, self.stage, self.reason, self.refs))

    def matches(self, letter: DeadLetter) -> bool:
        if self.refs and not {letter.event_id, letter.ref} & set(self.refs):
            return False
        if self.since is not None and letter.at < self.since.timestamp():
            return False
        if self.stage is not None and letter.stage != self.stage:
            return False
        return self.reason is None or self.reason.lower() in letter.reason.lower()


@dataclass
class Resent:
    letter: DeadLetter
    topic: str
    partition: int | None = None
    offset: int | None = None


@dataclass
class RedriveReport:
    resent: list[Resent] = field(default_factory=list)
    already: list[DeadLetter] = field(default_factory=list)
    """Selected, but sent back by an earlier redrive."""
    unreadable: list[tuple[DeadLetter, str]] = field(default_factory=list)
    """Selected, but their bytes could not be found (with why)."""


async def read_dead_letters(settings: Settings, *, progress: bool = False) -> list[DeadLetter]:
    """Every dead letter now in the topic, oldest first within each partition."""
    consumer = _reader(settings)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, settings.dlq_topic)
        if not partitions:
            raise ValueError(f"topic {settings.dlq_topic!r} does not exist")
        letters = []
        bar = progress_bar(None, "dead letters", unit="msg", enabled=progress)
        async for record in read_to_end(consumer, partitions):
            bar.update(1)
            try:
                message = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                message = {"stage": "?", "reason": "not a dead letter (not JSON)"}
            letters.append(DeadLetter(record.partition, record.offset, message))
        bar.close()
        return letters
    finally:
        await consumer.stop()


def summarize(letters: Iterable[DeadLetter]) -> list[dict[str, Any]]:
    """Counts by stage and reason, most first, each with its newest examples."""
    groups: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault((letter.stage, letter.reason), []).append(letter)
    rows = []
    for (stage, reason), members in groups.items():
        newest = sorted(members, key=lambda letter: letter.at, reverse=True)[:EXAMPLES]
        rows.append(
            {
                "stage": stage,
                "reason": reason,
                "count": len(members),
                "newest_at": newest[0].at,
                "examples": [letter.ref for letter in newest],
            }
        )
    return sorted(rows, key=lambda row: (-row["count"], row["stage"], row["reason"]))


def find(letters: Iterable[DeadLetter], ref: str) -> DeadLetter | None:
    """The dead letter with id ``ref``, or at ``partition:offset`` in the dead-letter topic."""
    return next((letter for letter in letters if ref in (letter.event_id, letter.ref)), None)


async def redriven_ids(settings: Settings) -> dict[str, dict[str, Any]]:
    """Dead letter id -> where an earlier redrive sent it."""
    consumer = _reader(settings)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, ledger_topic(settings))
        return {
            record.key.decode(): orjson.loads(record.value)
            async for record in read_to_end(consumer, partitions)
            if record.key is not None and record.value is not None
        }
    finally:
        await consumer.stop()


async def redrive(
    settings: Settings, letters: Sequence[DeadLetter], *, dry_run: bool = False
) -> RedriveReport:
    """Send each of ``letters`` back where it failed, unless an earlier redrive did."""
    report = RedriveReport()
    done = await redriven_ids(settings) if await _ledger_exists(settings) else {}
    pending = []
    for letter in letters:
        if letter.event_id in done:
            report.already.append(letter)
        else:
            pending.append(letter)
    if dry_run:
        report.resent = [Resent(letter, _target(settings, letter)) for letter in pending]
        return report
    if not pending:
        return report
    await ensure_topics(
        settings.kafka_bootstrap,
        [TopicSpec(ledger_topic(settings), 1, {"cleanup.policy": "compact"})],
        replication=Replication.of(settings),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        partitioner=KeyHashPartitioner(),
        max_request_size=settings.max_body_bytes + (64 << 10),
    )
    await producer.start()
    try:
        for letter in pending:
            try:
                value = await _original_value(settings, letter)
            except LookupError as exc:
                report.unreadable.append((letter, str(exc)))
                continue
            report.resent.append(await _resend(settings, producer, letter, value))
    finally:
        await producer.stop()
    return report


async def _resend(
    settings: Settings, producer: AIOKafkaProducer, letter: DeadLetter, value: bytes | None
) -> Resent:
    """The resend, acknowledged, then its line in the ledger."""
    topic = _target(settings, letter)
    key_base64 = letter.message.get("key_base64")
    key = None if key_base64 is None else base64.b64decode(key_base64)
    headers = {
        name: data
        for name, data in letter.headers().items()
        if not name.startswith(INTERNAL_HEADERS)
    }
    headers[ATTEMPT_HEADER] = b"%d" % (letter.attempt + 1)
    headers[REDRIVEN_FROM_HEADER] = letter.event_id.encode()
    sent = await producer.send_and_wait(topic, value, key=key, headers=list(headers.items()))
    where = {"topic": topic, "partition": sent.partition, "offset": sent.offset}
    entry = where | {"redriven_at": time.time(), "attempt": letter.attempt + 1}
    await producer.send_and_wait(
        ledger_topic(settings), orjson.dumps(entry), key=letter.event_id.encode()
    )
    return Resent(letter, topic, sent.partition, sent.offset)


def _target(settings: Settings, letter: DeadLetter) -> str:
    return settings.raw_topic if letter.stage in RAW_STAGES else settings.fetch_topic


async def _original_value(settings: Settings, letter: DeadLetter) -> bytes | None:
    """The dead letter's bytes; for one too large to carry them, the record at its source."""
    message = letter.message
    if message.get("value_base64") is not None:
        return base64.b64decode(message["value_base64"])
    if message.get("value_size") is None:
        return None
    source = message.get("source") or {}
    tp = TopicPartition(str(source.get("topic")), int(source.get("partition", -1)))
    offset = int(source.get("offset", -1))
    consumer = _reader(settings)
    await consumer.start()
    try:
        async for record in read_to_end(
            consumer, [tp], starts={tp: offset}, stops={tp: offset + 1}
        ):
            return record.value
    finally:
        await consumer.stop()
    raise LookupError(f"its {message['value_size']} bytes are no longer at {tp}@{offset}")


async def _ledger_exists(settings: Settings) -> bool:
    consumer = _reader(settings)
    await consumer.start()
    try:
        return bool(await topic_partitions(consumer, ledger_topic(settings)))
    finally:
        await consumer.stop()


def _reader(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )

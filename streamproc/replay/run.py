"""``streamproc replay``: derive state and lifecycle again from the raw log, from any point.

Each selected partition is folded from its first record, so the state at the start point is
exactly what the log says; outputs are emitted only for records inside the chosen range
(``--from-offset``/``--from-time`` to ``--to-offset``/``--to-time``). The fold is pure and
the ids are deterministic, so replaying the same range twice writes the same keys, ids and
values, and consumers can de-duplicate a replay against the live output.

The end of each partition is its log end when the replay starts, read from a fetch
(``streamproc.kafka.offsets``: the embedded broker's ListOffsets answer is short).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from streamproc.core import derived
from streamproc.core.events import RecordingEvent
from streamproc.core.fold import FoldOutput, RecordingState, SourcePosition, fold
from streamproc.core.stalls import StallClock
from streamproc.kafka.metadata import topic_partitions
from streamproc.kafka.offsets import log_ends
from streamproc.kafka.partitions import KeyHashPartitioner, partition_for
from streamproc.kafka.reading import QUIET_S, ReadReport, read_to_end
from streamproc.ops.progress import progress_bar
from streamproc.providers import Provider, enabled_providers
from streamproc.providers.decode import Skipped, Unlinked, Unusable, decode_record, header_dict
from streamproc.replay.states import ReplayStates
from streamproc.settings import Settings

log = logging.getLogger(__name__)
FoldFunction = Callable[..., tuple[RecordingState, FoldOutput]]
WRITE_EVERY = 1000
"""A replay that writes sends its outputs in chunks of this many as it goes."""


@dataclass(frozen=True, slots=True)
class ReplayRange:
    from_offset: int | None = None
    from_time: datetime | None = None
    to_offset: int | None = None
    """Last offset included."""
    to_time: datetime | None = None
    partitions: Sequence[int] | None = None


@dataclass
class ReplayResult:
    states: ReplayStates = field(default_factory=ReplayStates)
    """Every recording's state, on disk with the recent ones in memory (``replay_states``)."""
    emitted: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    """(topic, key, value) in emission order: all of them in a dry run; in a replay that
    writes, those not written yet (they are sent as the replay goes, so memory holds the
    states, not the outputs)."""
    counts: Counter[str] = field(default_factory=Counter)
    linked: dict[str, str] = field(default_factory=dict)
    """Instance id -> recording id, from every event that names both (the worker's join)."""
    held: dict[str, list[tuple[RecordingEvent, SourcePosition, bool]]] = field(default_factory=dict)
    """Events naming only an instance not linked yet, with where they came from and whether
    their outputs are in the replayed range."""
    watermark: float = 0.0
    """The newest event time seen: the worker's join keeps one per partition."""
    clock: StallClock | None = None
    """Stall detection (``stalls.py``), over its own store as the worker's is its table."""
    starts: dict[int, int] = field(default_factory=dict)
    """Per partition, the first offset whose outputs are emitted (``--from-offset``/``-time``)."""

    def close(self) -> None:
        """Drop the states' store (its temporary directory)."""
        self.states.close()


async def _offset_at(
    consumer: AIOKafkaConsumer, tp: TopicPartition, when: datetime, end: int
) -> int:
    """First offset at or after ``when``; the end if there is none.

    Tansu answers a time after the last record with offset 0 and timestamp -1 (Kafka answers
    None), so a timestamp earlier than asked also means "no such record".
    """
    wanted = int(when.timestamp() * 1000)
    found = (await consumer.offsets_for_times({tp: wanted})).get(tp)
    if found is None or found.timestamp < wanted:
        return end
    return found.offset


async def replay(
    settings: Settings,
    selection: ReplayRange,
    *,
    dry_run: bool = False,
    output_suffix: str | None = None,
    refetch: bool = False,
    fold_fn: FoldFunction = fold,
    progress: bool = True,
    keep_outputs: bool = True,
) -> ReplayResult:
    """Fold the selected partitions; write outputs of the range unless ``dry_run``.

    A dry run keeps every output in ``result.emitted`` unless ``keep_outputs`` is False
    (the command counts them only: memory then holds the states, not the outputs)."""
    topic = settings.raw_topic
    result = ReplayResult()
    producer = None
    if not dry_run:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            linger_ms=5,
            partitioner=KeyHashPartitioner(),
        )
        await producer.start()
    try:
        consumer = await _reader(settings)
    except BaseException:
        if producer is not None:
            await producer.stop()
        raise
    try:
        tps = await _partitions(consumer, topic)
        result.clock = StallClock({}, settings.stall_after_s, len(tps))
        if selection.partitions is not None:
            tps = [tp for tp in tps if tp.partition in set(selection.partitions)]
        ends = await log_ends(consumer, tps)
        starts, stops = {}, {}
        for tp in tps:
            start = selection.from_offset or 0
            if selection.from_time is not None:
                start = await _offset_at(consumer, tp, selection.from_time, ends[tp])
            stop = ends[tp]
            if selection.to_offset is not None:
                stop = min(stop, selection.to_offset + 1)
            if selection.to_time is not None:
                stop = min(stop, await _offset_at(consumer, tp, selection.to_time, ends[tp]))
            starts[tp], stops[tp] = start, stop
            result.starts[tp.partition] = start
        total = sum(stops.values())
        bar = progress_bar(total, "replay", unit="rec", enabled=progress)
        providers = enabled_providers(settings)
        report = ReadReport()
        by_partition = {tp.partition: start for tp, start in starts.items()}
        async for record in read_to_end(consumer, tps, stops=stops, report=report):
            bar.update(1)
            _apply(
                result,
                record,
                emit=record.offset >= by_partition[record.partition],
                settings=settings,
                output_suffix=output_suffix,
                refetch=refetch,
                fold_fn=fold_fn,
                providers=providers,
            )
            if len(result.emitted) >= WRITE_EVERY:
                await _hand_over(producer, result, keep_outputs)
        result.counts["partitions_cut_short"] += len(report.cut_short)
        _announce_failed_starts(result, settings, output_suffix)
        await _hand_over(producer, result, keep_outputs)
        bar.close()
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    return result


async def _reader(settings: Settings) -> AIOKafkaConsumer:
    """A group-less consumer: a replay never moves the live worker's offsets. Its fetch wait
    is the worker's (a durable broker answers shorter ones with nothing, docs/notes/durability.md
    section 6)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    await consumer.start()
    return consumer


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = await topic_partitions(consumer, topic)
    if not partitions:
        raise ValueError(f"topic {topic!r} does not exist")
    return partitions


def _apply(
    result: ReplayResult,
    record: ConsumerRecord,
    *,
    emit: bool,
    settings: Settings,
    output_suffix: str | None,
    refetch: bool,
    fold_fn: FoldFunction,
    providers: Mapping[str, Provider],
) -> None:
    """One raw record, through the same steps as the worker, instance join included."""
    result.counts["records"] += 1
    decoded = decode_record(
        record.value, header_dict(record.headers), settings.max_body_bytes, providers
    )
    if isinstance(decoded, Unusable | Skipped):
        result.counts["unusable" if isinstance(decoded, Unusable) else "skipped"] += 1
        return
    source = SourcePosition(record.topic, record.partition, record.offset)
    event_time = decoded.event.occurred_at if isinstance(decoded, Unlinked) else decoded.occurred_at
    result.watermark = max(result.watermark, event_time)
    options = {"settings": settings, "output_suffix": output_suffix, "refetch": refetch}
    if isinstance(decoded, Unlinked):
        recording_id = result.linked.get(decoded.instance_id)
        if recording_id is None:
            result.held.setdefault(decoded.instance_id, []).append((decoded.event, source, emit))
            return
        decoded = replace(decoded.event, recording_id=recording_id)
    _fold_one(result, decoded, source, emit, fold_fn, **options)
    if decoded.instance_id and decoded.instance_id not in result.linked:
        result.linked[decoded.instance_id] = decoded.recording_id
        for event, held_source, held_emit in result.held.pop(decoded.instance_id, []):
            linked = replace(event, recording_id=decoded.recording_id)
            _fold_one(result, linked, held_source, held_emit, fold_fn, **options)


def _announce_failed_starts(
    result: ReplayResult, settings: Settings, output_suffix: str | None
) -> None:
    """The worker's join step 4 (``worker/join.py``), once the whole range is read: every
    instance still unlinked ``START_GRACE_S`` before the newest event time is a failed start. The
    worker decides per partition as it goes, so a start that came more than the grace after
    its error (in event time) can be announced live and not here."""
    topic = settings.lifecycle_topic
    name = f"{topic}.{output_suffix}" if output_suffix else topic
    for instance_id, held in sorted(result.held.items()):
        first, _, emit = min(held, key=lambda item: item[0].occurred_at)
        if first.occurred_at >= result.watermark - derived.START_GRACE_S or not emit:
            continue
        message = derived.start_failed_message(
            provider=first.provider,
            instance_id=instance_id,
            caused_by=first.event_id,
            occurred_at=first.occurred_at,
            room=first.room,
            error=first.error,
        )
        result.emitted.append((name, instance_id.encode(), derived.encode(message)))
        result.counts[f"emitted.{topic}"] += 1
        result.counts["start_failed"] += 1


def _fold_one(
    result: ReplayResult,
    event: RecordingEvent,
    source: SourcePosition,
    emit: bool,
    fold_fn: FoldFunction,
    *,
    settings: Settings,
    output_suffix: str | None,
    refetch: bool,
) -> None:
    state, output = fold_fn(result.states.get(event.recording_id), event, source)
    result.states[event.recording_id] = state
    if not output.changed:
        return
    result.counts["folded"] += emit
    _emit(result, state, output, event.event_id, emit, settings, output_suffix, refetch)
    clock = result.clock
    if clock is None:
        return
    partition = partition_for(event.recording_id.encode(), clock.partitions)
    for stalled in clock.observe(
        partition, state, event.event_id, event.occurred_at, result.states.get
    ):
        result.states[stalled.state.recording_id] = stalled.state
        result.counts["stalled"] += 1
        _emit(
            result,
            stalled.state,
            stalled.output,
            event.event_id,
            emit,
            settings,
            output_suffix,
            refetch,
        )


def _emit(
    result: ReplayResult,
    state: RecordingState,
    output: FoldOutput,
    event_id: str,
    emit: bool,
    settings: Settings,
    output_suffix: str | None,
    refetch: bool,
) -> None:
    """What the worker sends for one fold step, if its record is in the replayed range."""
    if not emit:
        return
    key = state.recording_id.encode()
    topics = {
        "state": settings.state_topic,
        "lifecycle": settings.lifecycle_topic,
        "fetch": settings.fetch_topic,
    }
    for kind, message in derived.fold_messages(state, output, event_id, refetch):
        topic = topics[kind]
        name = f"{topic}.{output_suffix}" if output_suffix else topic
        result.emitted.append((name, key, derived.encode(message)))
        result.counts[f"emitted.{topic}"] += 1


async def _hand_over(
    producer: AIOKafkaProducer | None, result: ReplayResult, keep_outputs: bool
) -> None:
    """Outputs so far: written (a replay that writes), kept, or only counted."""
    if producer is not None:
        await _write(producer, result)
    elif not keep_outputs:
        result.emitted.clear()


async def _write(producer: AIOKafkaProducer, result: ReplayResult) -> None:
    """Send what is emitted so far and wait for every acknowledgement (a failure raises)."""
    sent = [await producer.send(topic, value, key=key) for topic, key, value in result.emitted]
    await asyncio.gather(*sent)
    result.emitted.clear()


async def current_statuses(settings: Settings) -> dict[str, str]:
    """Status of the latest message per recording on the state topic (what consumers see
    now); only the status, so a large state topic costs an id and a word per recording."""
    import orjson

    consumer = await _reader(settings)
    try:
        latest: dict[str, str] = {}
        async for record in read_to_end(
            consumer, await _partitions(consumer, settings.state_topic)
        ):
            message = orjson.loads(record.value)
            latest[message["recording_id"]] = message["status"]
        return latest
    finally:
        await consumer.stop()


def status_changes(
    before: Mapping[str, str], after: Mapping[str, RecordingState]
) -> list[tuple[str, str | None, str]]:
    """(recording id, status now, status after the replay) for every recording that differs."""
    changes = []
    for recording_id in sorted(after):
        status = after[recording_id].status
        if before.get(recording_id) != status:
            changes.append((recording_id, before.get(recording_id), status))
    return changes


def print_report(settings: Settings, result: ReplayResult, *, dry_run: bool, show: int) -> None:
    """The summary, and for a dry run the recordings whose status would change."""
    counts = result.counts
    print(
        f"replayed {counts['records']} records: {counts['folded']} folded into outputs, "
        f"{counts['skipped']} skipped (not about a recording), {counts['unusable']} unusable"
    )
    for name, count in sorted(counts.items()):
        if name.startswith("emitted."):
            verb = "would write" if dry_run else "wrote"
            print(f"  {verb} {count} message(s) to {name.removeprefix('emitted.')}")
    held = sum(len(events) for events in result.held.values())
    if held:
        print(
            f"{held} event(s) name only an instance that no recording.started linked "
            f"({len(result.held)} instance(s)); not folded"
        )
    if counts["partitions_cut_short"]:
        print(
            f"{counts['partitions_cut_short']} partition(s) ended below their end: no record "
            f"came for {QUIET_S:.0f} s (offsets with no record, or a broker that stopped "
            "answering); their later records were not folded"
        )
    if dry_run:
        changes = status_changes(asyncio.run(current_statuses(settings)), result.states)
        print(f"{len(changes)} recording(s) would change status")
        if changes:
            print(f"  {'recording id':<40} {'now':<10} after replay")
            for recording_id, old, new in changes[:show]:
                print(f"  {recording_id:<40} {old or '-':<10} {new}")


def run(settings: Settings, selection: ReplayRange, **options: object) -> ReplayResult:
    return asyncio.run(replay(settings, selection, **options))  # type: ignore[arg-type]


async def group_lag(settings: Settings, group_id: str) -> dict[int, tuple[int, int]]:
    """Per raw partition: (committed offset of ``group_id``, log end)."""
    reader = await _reader(settings)
    group = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await group.start()
    try:
        tps = await _partitions(reader, settings.raw_topic)
        ends = await log_ends(reader, tps)
        return {tp.partition: (await group.committed(tp) or 0, ends[tp]) for tp in tps}
    finally:
        await group.stop()
        await reader.stop()

"""``streamproc replay``: derive state and lifecycle again from the raw log, from any point.

Each selected partition is read from its first record through the worker's own derivation
(``replay/topology.py``), so the state at the start point is exactly what the log says;
outputs are emitted only for records inside the chosen range (``--from-offset``/
``--from-time`` to ``--to-offset``/``--to-time``) and what they caused. The ids are
deterministic, so replaying the same range twice writes the same keys, ids and values, and
consumers can de-duplicate a replay against the live output.

A replay of some partitions (``--partition``) reads no record of the others, so it joins no
error to a start that sits in another partition and announces no failed start.

The end of each partition is its log end when the replay starts, read from a fetch
(``streamproc.kafka.offsets``: the embedded broker's ListOffsets answer is short).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamproc.core.fold import RecordingState, fold
from streamproc.derivation.join import held_instances
from streamproc.derivation.step import FoldFunction
from streamproc.kafka.coordinator import start_group_reader
from streamproc.kafka.metadata import topic_partitions
from streamproc.kafka.offsets import log_ends
from streamproc.kafka.partitions import KeyHashPartitioner
from streamproc.kafka.reading import QUIET_S, ReadReport, read_to_end
from streamproc.ops.progress import progress_bar
from streamproc.providers import enabled_providers
from streamproc.replay.states import ReplayStates
from streamproc.replay.topology import ReplayTopology
from streamproc.settings import Settings

log = logging.getLogger(__name__)
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
    states: ReplayStates
    """Every recording's state, on disk with the recent ones in memory (``replay_states``)."""
    emitted: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    """(topic, key, value) in emission order: all of them in a dry run; in a replay that
    writes, those not written yet (they are sent as the replay goes, so memory holds the
    states, not the outputs)."""
    counts: Counter[str] = field(default_factory=Counter)
    held: dict[str, int] = field(default_factory=dict)
    """Instance id -> events held for it: events naming only an instance that no
    ``recording.started`` linked (the join's, ``derivation/join.py``)."""
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
        all_partitions = await _partitions(consumer, topic)
        tps = all_partitions
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
        counts: Counter[str] = Counter()
        topology = ReplayTopology(
            settings,
            len(all_partitions),
            enabled_providers(settings),
            output_suffix=output_suffix,
            refetch=refetch,
            fold_fn=fold_fn,
            counts=counts,
        )
        result = ReplayResult(
            ReplayStates(topology.store),
            topology.outputs.emitted,
            counts,
            starts={tp.partition: start for tp, start in starts.items()},
        )
        bar = progress_bar(sum(stops.values()), "replay", unit="rec", enabled=progress)
        report = ReadReport()
        async for record in read_to_end(consumer, tps, stops=stops, report=report):
            bar.update(1)
            result.counts["records"] += 1
            await topology.handle(record, emit=record.offset >= result.starts[record.partition])
            if len(result.emitted) >= WRITE_EVERY:
                await _hand_over(producer, result, keep_outputs)
        _count(result, topology, len(report.cut_short))
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


def _count(result: ReplayResult, topology: ReplayTopology, cut_short: int) -> None:
    """The derivation's counts in the replay's terms, and what the join still holds."""
    counts = topology.derivation.counts
    result.counts["folded"] = topology.folded_into_outputs
    result.counts["unusable"] = counts["dead_lettered.decode"]
    result.counts["skipped"] = sum(n for name, n in counts.items() if name.startswith("skipped."))
    result.counts["start_failed"] = counts["join.start_failed"]
    result.counts["stalled"] = counts["stalled"]
    result.counts["partitions_cut_short"] += cut_short
    result.held = held_instances(topology.instance_table)


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
    held = sum(result.held.values())
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
    group = await start_group_reader(settings.kafka_bootstrap, group_id)
    try:
        tps = await _partitions(reader, settings.raw_topic)
        ends = await log_ends(reader, tps)
        return {tp.partition: (await group.committed(tp) or 0, ends[tp]) for tp in tps}
    finally:
        await group.stop()
        await reader.stop()

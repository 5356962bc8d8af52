"""The worker and a replay run one derivation: a replay from offset 0 emits what the worker
emitted, whatever order the worker read its partitions and internal topics in.

The live side is the derivation with in-memory tables, its raw, re-keyed and instances
topics as queues, each partition read in order and the partitions interleaved as hypothesis
chooses; the replay side is ``streamproc replay``'s own topology (``replay/topology.py``),
fed the raw partitions in another interleaving. What must be equal:

- every ``recording.start-failed``, byte for byte (decided from the raw log's marks), but
  for an instance whose start was written under another key (it reaches the join after the
  re-keyed topic's hop: a case of the difference below);
- every message about a recording whose events all came in on its own raw partition, byte
  for byte and in the same order, stalls included;
- every recording's final events, error and file, and whether it finished or failed.

A recording that meets events through the re-keyed topic (another producer's key, or an
error the join released) meets them at a point that depends on the interleaving: its
intermediate messages may differ, and that is the one difference ``derivation/step.py``
documents.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from types import SimpleNamespace

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core.derived import START_GRACE_S
from streamproc.core.fold import RecordingState
from streamproc.derivation.step import Derivation
from streamproc.kafka.partitions import partition_for
from streamproc.providers import PROVIDERS
from streamproc.replay.topology import InternalTopic, Outputs, ReplayTopology
from streamproc.settings import Settings

PARTITIONS = 2
BASE = 1_700_000_000
SETTINGS = Settings(stall_after_s=900.0)
HEADERS = {"provider": b"daily"}
RECORDINGS = [f"rec-{n}" for n in range(3)]
OFFSETS_S = [0, 200, START_GRACE_S - 10, START_GRACE_S + 40, 1000, 1500, 2400]
"""Event times around the grace (an error at 0, a start before or after 600 s) and far
enough apart to stall an open recording (``stall_after_s`` 900)."""


def daily(kind: str, event_id: str, at: float, **payload: object) -> bytes:
    document = {"version": "1.0.0", "type": kind, "id": event_id, "event_ts": at}
    return orjson.dumps(document | {"payload": {"room_name": "room", **payload}})


@st.composite
def raw_logs(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """(key, value) in the order producers wrote them: starts, finishes and instance-named
    errors of a few recordings, provider retries, and another producer's keys."""
    log = []
    for _ in range(draw(st.integers(1, 14))):
        index = draw(st.integers(0, len(RECORDINGS) - 1))
        recording, instance = RECORDINGS[index], f"inst-{index}"
        kind = draw(st.sampled_from(["started", "ready", "error", "clock"]))
        at = BASE + draw(st.sampled_from(OFFSETS_S))
        version = draw(st.integers(0, 1))  # the same id twice is a provider's retry
        event_id = f"{kind}-{index}-{version}"
        if kind == "started":
            value = daily(
                "recording.started", event_id, at, recording_id=recording, instance_id=instance
            )
        elif kind == "ready":
            value = daily(
                "recording.ready-to-download",
                event_id,
                at,
                recording_id=recording,
                s3_key=f"{recording}.mp4",
                status="finished",
            )
        elif kind == "error":
            value = daily("recording.error", event_id, at, instance_id=instance, error_msg=kind)
            log.append((instance.encode(), value))
            continue
        else:  # a recording of its own that only moves event time on
            recording = f"clock-{at}"
            value = daily("recording.started", f"clock-{at}", at, recording_id=recording)
        other_producer = kind != "clock" and draw(st.booleans())
        log.append((b"other-key" if other_producer else recording.encode(), value))
    return log


def partitioned(log: list[tuple[bytes, bytes]]) -> dict[int, list[SimpleNamespace]]:
    """The raw topic: each record on its key's partition, in the order written."""
    partitions: dict[int, list[SimpleNamespace]] = {p: [] for p in range(PARTITIONS)}
    for key, value in log:
        partition = partition_for(key, PARTITIONS)
        records = partitions[partition]
        records.append(
            SimpleNamespace(
                topic=SETTINGS.raw_topic,
                partition=partition,
                offset=len(records),
                key=key,
                value=value,
                headers=list(HEADERS.items()),
            )
        )
    return partitions


def interleave(partitions: dict[int, list[SimpleNamespace]], choose) -> list[SimpleNamespace]:
    """One partition after another as ``choose`` picks, each in its own order."""
    queues = {p: deque(records) for p, records in partitions.items()}
    order = []
    while ready := [p for p, queue in queues.items() if queue]:
        order.append(queues[choose(ready)].popleft())
    return order


def live(partitions, choose) -> tuple[list, dict[bytes, bytes]]:
    """The worker's derivation, its internal topics delivered when ``choose`` says."""
    deliveries: deque = deque()
    rekeyed = InternalTopic("rekeyed", PARTITIONS, deliveries)
    instances = InternalTopic("instances", PARTITIONS, deliveries)
    outputs = Outputs(None, Counter())
    table: dict[bytes, bytes] = {}
    derivation = Derivation(
        table=table,
        state=outputs.topic(SETTINGS.state_topic),
        lifecycle=outputs.topic(SETTINGS.lifecycle_topic),
        fetch_requests=outputs.topic(SETTINGS.fetch_topic),
        dead_letters=outputs.topic(SETTINGS.dlq_topic),
        rekeyed=rekeyed,
        instances=instances,
        instance_table={},
        partitions=PARTITIONS,
        providers=PROVIDERS,
        stall_after_s=SETTINGS.stall_after_s,
    )
    queues = {("raw", p): deque(records) for p, records in partitions.items()}

    async def run() -> None:
        while True:
            while deliveries:  # each internal topic partition keeps its order
                item = deliveries.popleft()
                queues.setdefault((item.topic, item.partition), deque()).append(item)
            ready = [name for name, queue in queues.items() if queue]
            if not ready:
                return
            name = choose(ready)
            record = queues[name].popleft()
            place = (record.topic, record.partition, record.offset, record.key, record.value)
            headers = dict(record.headers)
            if name[0] == "instances":
                await derivation.handle_instance(*place, headers)
            else:
                await derivation.handle_raw(*place, headers, rekeyed=name[0] == "rekeyed")

    asyncio.run(run())
    return outputs.emitted, table


def replayed(partitions, choose) -> tuple[list, dict[bytes, bytes]]:
    topology = ReplayTopology(
        SETTINGS,
        PARTITIONS,
        PROVIDERS,
        output_suffix=None,
        refetch=False,
        fold_fn=__import__("streamproc.core.fold", fromlist=["fold"]).fold,
        counts=Counter(),
    )

    async def run() -> None:
        for record in interleave(partitions, choose):
            await topology.handle(record, emit=True)

    asyncio.run(run())
    table = dict(topology.store.items())
    topology.store.close()
    return topology.outputs.emitted, table


def about(emitted, key: bytes) -> list[tuple[str, bytes]]:
    return [(topic, value) for topic, message_key, value in emitted if message_key == key]


def start_failed(emitted, except_instances: set[str] = frozenset()) -> list[bytes]:
    """Every ``recording.start-failed``, but those about ``except_instances``."""
    return sorted(
        value
        for _, _, value in emitted
        if (message := orjson.loads(value)).get("recording_id", "") is None
        and message["instance_id"] not in except_instances
    )


def started_through_rekeyed(log: list[tuple[bytes, bytes]]) -> set[str]:
    """Instances named by a start written under another key: the join meets that start
    after the re-keyed topic's hop, so whether it came within the grace of the instance's
    error depends on the reading order (docs/replay.md)."""
    return {
        document["payload"]["instance_id"]
        for key, value in log
        if (document := orjson.loads(value))["type"] == "recording.started"
        and "instance_id" in document["payload"]
        and key != document["payload"]["recording_id"].encode()
    }


def states(table: dict[bytes, bytes]) -> dict[str, RecordingState]:
    return {
        key.decode(): RecordingState.from_json(value)
        for key, value in table.items()
        if not key.startswith(b"\x00")
    }


def through_rekeyed(log: list[tuple[bytes, bytes]]) -> set[str]:
    """Recordings that meet an event through the re-keyed topic."""
    reached = set()
    for key, value in log:
        document = orjson.loads(value)
        payload = document["payload"]
        if document["type"] == "recording.error":
            reached.add(RECORDINGS[int(payload["instance_id"].removeprefix("inst-"))])
        elif key != payload["recording_id"].encode():
            reached.add(payload["recording_id"])
    return reached


@settings(max_examples=200, deadline=None)
@given(raw_logs(), st.data())
def test_a_replay_emits_what_the_worker_emitted_in_any_reading_order(log, data):
    def chooser(label: str):
        return lambda ready: ready[data.draw(st.integers(0, len(ready) - 1), label=label)]

    partitions = partitioned(log)
    live_emitted, live_table = live(partitions, chooser("worker reads"))
    replay_emitted, replay_table = replayed(partitions, chooser("replay reads"))

    rekeyed_starts = started_through_rekeyed(log)
    assert start_failed(live_emitted, rekeyed_starts) == start_failed(
        replay_emitted, rekeyed_starts
    )
    live_states, replay_states = states(live_table), states(replay_table)
    assert live_states.keys() == replay_states.keys()
    tainted = through_rekeyed(log)
    for recording_id, state in live_states.items():
        other = replay_states[recording_id]
        assert (state.event_ids, state.error, state.s3_key) == (
            other.event_ids,
            other.error,
            other.s3_key,
        )
        assert (state.status in ("finished", "failed")) == (other.status in ("finished", "failed"))
        if recording_id not in tainted:
            key = recording_id.encode()
            assert about(live_emitted, key) == about(replay_emitted, key), recording_id

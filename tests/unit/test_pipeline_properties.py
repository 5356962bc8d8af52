"""The whole worker pipeline (raw, instances and re-keyed topics, the join and the fold) under
any interleaving and duplication of a recording's Daily events, the instance-named errors
included: the recording converges to one state, and each transition is published once."""

from __future__ import annotations

import asyncio
from collections import deque

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.core.fold import RecordingState

from helpers import in_memory_pipeline

RECORDING, INSTANCE = "rec-1", "inst-1"
HEADERS = {"provider": b"daily"}


def daily(kind: str, event_id: str, at: int, **payload) -> bytes:
    document = {"version": "1.0.0", "type": kind, "id": event_id, "event_ts": at}
    return orjson.dumps(document | {"payload": {"room_name": "room", **payload}})


EVENTS = {
    "started": (
        RECORDING,
        daily("recording.started", "s", 100, recording_id=RECORDING, instance_id=INSTANCE),
    ),
    "ready": (
        RECORDING,
        daily(
            "recording.ready-to-download",
            "r",
            160,
            recording_id=RECORDING,
            s3_key="k.mp4",
            status="finished",
        ),
    ),
    "error": (INSTANCE, daily("recording.error", "e1", 150, instance_id=INSTANCE, error_msg="x")),
    "error-2": (INSTANCE, daily("recording.error", "e2", 155, instance_id=INSTANCE, error_msg="y")),
}


class Queue:
    """A topic: what was sent, in order, and what the pipeline has not handled yet."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: deque[tuple[bytes, bytes, dict[str, bytes]]] = deque()
        self.offset = 0

    async def send(self, *, key: bytes, value: bytes, headers=None, partition=None) -> None:
        self.pending.append((key, value, dict(headers or [])))


class Output:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, *, key: bytes, value: bytes, headers=None, partition=None) -> None:
        self.sent.append(orjson.loads(value))


def run(deliveries: list[str], choose) -> tuple[RecordingState, list[dict], dict, list[dict]]:
    raw, rekeyed, instances = Queue("raw"), Queue("rekeyed"), Queue("instances")
    state, lifecycle, other, dead = Output(), Output(), Output(), Output()
    pipeline = in_memory_pipeline(
        other,
        1,
        state=state,
        lifecycle=lifecycle,
        dead_letters=dead,
        rekeyed=rekeyed,
        instances=instances,
    )
    table = pipeline.table
    for name in deliveries:
        key, value = EVENTS[name]
        raw.pending.append((key.encode(), value, HEADERS))

    async def drain() -> None:
        queues = [raw, rekeyed, instances]
        while ready := [queue for queue in queues if queue.pending]:
            queue = choose(ready)
            key, value, headers = queue.pending.popleft()
            offset, queue.offset = queue.offset, queue.offset + 1
            if queue is instances:
                await pipeline.handle_instance(queue.name, 0, offset, key, value, headers)
            else:
                await pipeline.handle_raw(
                    queue.name, 0, offset, key, value, headers, rekeyed=queue is rekeyed
                )

    asyncio.run(drain())
    recordings = {key: value for key, value in table.items() if not key.startswith(b"\x00")}
    final = RecordingState.from_dict(orjson.loads(recordings[RECORDING.encode()]))
    return final, lifecycle.sent, recordings, dead.sent


deliveries = st.lists(st.sampled_from(sorted(EVENTS)), min_size=1, max_size=10).filter(
    lambda names: "started" in names
)


@settings(max_examples=300, deadline=None)
@given(deliveries, st.data())
def test_any_interleaving_and_duplication_converges_and_publishes_each_transition_once(names, data):
    def choose(ready):
        return ready[data.draw(st.integers(0, len(ready) - 1))]

    final, lifecycle, recordings, dead = run(names, choose)
    reference, _, _, _ = run(sorted(set(names), key=list(EVENTS).index), lambda ready: ready[0])
    assert list(recordings) == [RECORDING.encode()]  # nothing keyed by the instance
    assert dead == []
    assert (final.status, final.error, final.s3_key, final.event_ids) == (
        reference.status,
        reference.error,
        reference.s3_key,
        reference.event_ids,
    )
    expected = (
        "finished"
        if "ready" in names
        else ("failed" if "error" in names or "error-2" in names else "active")
    )
    assert final.status == expected
    transitions = [(m["recording_id"], m["to_status"]) for m in lifecycle]
    assert len(transitions) == len(set(transitions))
    if "error" in names or "error-2" in names:
        latest_error = "y" if "error-2" in names else "x"
        assert final.error == latest_error

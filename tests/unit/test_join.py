"""The instance join: events that name only Daily's instance meet their recording."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from streamproc.core.fold import SourcePosition
from streamproc.derivation.join import (
    GRACE_S,
    LINK_HEADER,
    MARK_HEADER,
    MARK_KEY,
    SUMMARY_HEADER,
    InstanceJoin,
)
from streamproc.providers.decode import LINKED_RECORDING_HEADER

from helpers import in_memory_pipeline

SOURCE = SourcePosition("recordings.raw", 0, 7)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, dict[str, bytes]]] = []
        self.partitions: list[int | None] = []

    async def send(self, *, key: bytes, value: bytes, headers=None, partition=None) -> None:
        self.sent.append((key, value, dict(headers or [])))
        self.partitions.append(partition)


ANNOUNCED: list[tuple[str, dict]] = []


def _join(max_held: int = 50, raw_partitions: int = 1):
    table: dict[bytes, bytes] = {}
    instances, rekeyed, dead = Recorder(), Recorder(), []
    ANNOUNCED.clear()

    async def dead_letter(reason, source, key, value, headers) -> None:
        dead.append((reason, key, value))

    async def announce(instance, summary) -> None:
        ANNOUNCED.append((instance, dict(summary)))

    join = InstanceJoin(
        table,
        instances,
        rekeyed,
        dead_letter,
        announce,
        Counter(),
        raw_partitions=raw_partitions,
        max_held=max_held,
    )
    return join, table, instances, rekeyed, dead


def _link(join: InstanceJoin, instance: bytes, recording: str, mark: float | None = 1000.0) -> None:
    value = orjson.dumps({"recording_id": recording, "mark": mark})
    asyncio.run(join.handle(instance, value, {LINK_HEADER: b"1"}, SOURCE, 0))


def _error(
    join: InstanceJoin,
    instance: bytes,
    value: bytes,
    at: float = 1000.0,
    headers=None,
    mark: float | None = None,
):
    """An error read when its raw partition's mark was ``mark`` (its own time unless said)."""
    summary = {"event_id": f"err-{value.decode()}", "at": at, "room": "room-1"}
    summary["mark"] = at if mark is None else mark
    routed = {**(headers or {}), SUMMARY_HEADER: orjson.dumps(summary)}
    asyncio.run(join.handle(instance, value, routed, SOURCE, 0))


def _mark(join: InstanceJoin, raw_partition: int, mark: float) -> None:
    value = orjson.dumps({"partition": raw_partition, "mark": mark})
    asyncio.run(join.handle(MARK_KEY, value, {MARK_HEADER: b"1"}, SOURCE, 0))


def test_an_error_before_its_start_is_held_then_released_to_its_recording():
    join, table, _, rekeyed, _ = _join()
    _error(join, b"inst-1", b"error-bytes", headers={"provider": b"daily"})
    assert rekeyed.sent == []
    assert len(orjson.loads(table[b"inst-1"])["held"]) == 1  # in the table: survives a restart
    _link(join, b"inst-1", "rec-1")
    [(key, value, headers)] = rekeyed.sent
    assert (key, value, headers["provider"]) == (b"rec-1", b"error-bytes", b"daily")
    assert headers[LINKED_RECORDING_HEADER] == b"rec-1"
    assert join.counts["join.held"] == 1 and join.counts["join.released"] == 1
    entry = orjson.loads(table[b"inst-1"])
    assert (entry["recording_id"], entry["held"]) == ("rec-1", [])
    assert ANNOUNCED == []


def test_an_error_after_its_start_goes_straight_to_its_recording():
    join, _, _, rekeyed, _ = _join()
    _link(join, b"inst-1", "rec-1")
    _error(join, b"inst-1", b"error-bytes")
    assert [(key, value) for key, value, _ in rekeyed.sent] == [(b"rec-1", b"error-bytes")]


def test_the_first_link_wins_and_a_repeated_link_releases_nothing_twice():
    join, _, _, rekeyed, _ = _join()
    _error(join, b"inst-1", b"e1")
    _link(join, b"inst-1", "rec-1")
    _link(join, b"inst-1", "rec-other")
    _error(join, b"inst-1", b"e2")
    assert [(key, value) for key, value, _ in rekeyed.sent] == [
        (b"rec-1", b"e1"),
        (b"rec-1", b"e2"),
    ]


def test_an_instance_never_linked_holds_a_bounded_number_then_dead_letters():
    join, _, _, rekeyed, dead = _join(max_held=2)
    for index in range(3):
        _error(join, b"inst-9", b"e%d" % index)
    assert rekeyed.sent == []
    assert [(key, value) for _, key, value in dead] == [(b"inst-9", b"e2")]
    assert "already holds 2 events" in dead[0][0]


def test_routing_linking_and_marks_write_to_the_instances_topic():
    join, _, instances, _, _ = _join(raw_partitions=2)
    asyncio.run(join.route("inst-1", b"error-bytes", {"provider": b"daily"}, {"at": 5.0}))
    asyncio.run(join.link("inst-1", "rec-1", 30.0))
    asyncio.run(join.send_mark(1, 30.0))
    assert instances.sent == [
        (b"inst-1", b"error-bytes", {"provider": b"daily", SUMMARY_HEADER: b'{"at":5.0}'}),
        (b"inst-1", b'{"recording_id":"rec-1","mark":30.0}', {LINK_HEADER: b"1"}),
        (MARK_KEY, b'{"partition":1,"mark":30.0}', {MARK_HEADER: b"1"}),
        (MARK_KEY, b'{"partition":1,"mark":30.0}', {MARK_HEADER: b"1"}),
    ]
    assert instances.partitions == [None, None, 0, 1]  # a mark goes to every partition


def test_an_instance_unlinked_when_every_raw_partition_passed_its_grace_is_a_failed_start():
    join, _, _, rekeyed, _ = _join(raw_partitions=2)
    _error(join, b"inst-never", b"e1", at=1000.0)
    _error(join, b"inst-other", b"e2", at=1000.0 + GRACE_S)
    _mark(join, 0, 1000.0 + GRACE_S + 30)
    assert ANNOUNCED == []  # raw partition 1 has not said where it is
    _mark(join, 1, 1000.0 + GRACE_S)
    assert ANNOUNCED == []  # partition 1 could still send a start within the grace
    _mark(join, 1, 1000.0 + GRACE_S + 30)
    assert [(instance, summary["room"]) for instance, summary in ANNOUNCED] == [
        ("inst-never", "room-1")
    ]
    _mark(join, 0, 5000.0)
    _mark(join, 1, 5000.0)
    assert [instance for instance, _ in ANNOUNCED] == ["inst-never", "inst-other"]  # once each
    _link(join, b"inst-never", "rec-never", mark=6000.0)  # a start after all still releases
    assert [(key, value) for key, value, _ in rekeyed.sent] == [(b"rec-never", b"e1")]
    _mark(join, 0, 9000.0)
    _mark(join, 1, 9000.0)
    assert len(ANNOUNCED) == 2


def test_a_start_counts_by_the_mark_it_was_read_at_whenever_its_link_arrives():
    join, _, _, _, _ = _join()
    _error(join, b"inst-early", b"e1", at=1000.0)
    _error(join, b"inst-late", b"e2", at=1000.0)
    _link(join, b"inst-early", "rec-early", mark=1000.0 + GRACE_S)  # within the grace
    _link(join, b"inst-late", "rec-late", mark=1000.0 + GRACE_S + 30)  # read after it
    _mark(join, 0, 1000.0 + GRACE_S + 30)
    assert [instance for instance, _ in ANNOUNCED] == ["inst-late"]


def test_a_link_arriving_before_the_error_counts_the_same():
    join, _, _, _, _ = _join()
    _link(join, b"inst-1", "rec-1", mark=1000.0)
    _error(join, b"inst-1", b"e1", at=1000.0)
    _mark(join, 0, 5000.0)
    assert ANNOUNCED == []


def test_an_error_read_after_its_grace_had_passed_is_never_announced():
    join, _, _, _, _ = _join()
    _error(join, b"inst-1", b"e1", at=1000.0, mark=1000.0 + GRACE_S + 30)
    _mark(join, 0, 9000.0)
    assert ANNOUNCED == []


def test_the_earliest_counting_error_decides_and_is_named():
    join, _, _, _, _ = _join()
    _error(join, b"inst-1", b"e-second", at=1100.0)
    _error(join, b"inst-1", b"e-first", at=1000.0, mark=1100.0)
    _link(join, b"inst-1", "rec-1", mark=1000.0 + GRACE_S + 60)  # counts for 1100, not 1000
    _mark(join, 0, 9000.0)
    assert [(instance, summary["event_id"]) for instance, summary in ANNOUNCED] == [
        ("inst-1", "err-e-first")
    ]


def test_a_link_without_a_mark_releases_but_does_not_count():
    join, _, _, rekeyed, _ = _join()
    _error(join, b"inst-1", b"e1", at=1000.0)
    _link(join, b"inst-1", "rec-1", mark=None)  # forwarded by the sweeper: no raw mark
    assert [(key, value) for key, value, _ in rekeyed.sent] == [(b"rec-1", b"e1")]
    _mark(join, 0, 9000.0)
    assert [instance for instance, _ in ANNOUNCED] == ["inst-1"]


def test_a_malformed_link_is_dead_lettered_by_the_pipeline_not_a_crash():
    import asyncio as aio

    topic = Recorder()
    pipeline = in_memory_pipeline(topic)
    aio.run(
        pipeline.handle_instance("x-instances", 0, 3, b"inst", b"not json", {LINK_HEADER: b"1"})
    )
    [(key, value, _)] = topic.sent
    assert key == b"inst"
    dead = orjson.loads(value)
    assert (dead["stage"], dead["source"]["offset"]) == ("join", 3)

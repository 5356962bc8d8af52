"""The instance join: events that name only Daily's instance meet their recording."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from streamproc.core.fold import SourcePosition
from streamproc.providers.decode import LINKED_RECORDING_HEADER
from streamproc.worker.join import GRACE_S, LINK_HEADER, SUMMARY_HEADER, InstanceJoin

from helpers import in_memory_pipeline

SOURCE = SourcePosition("recordings.raw", 0, 7)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, dict[str, bytes]]] = []

    async def send(self, *, key: bytes, value: bytes, headers=None) -> None:
        self.sent.append((key, value, dict(headers or [])))


ANNOUNCED: list[tuple[str, dict]] = []


def _join(max_held: int = 50):
    table: dict[bytes, bytes] = {}
    instances, rekeyed, dead = Recorder(), Recorder(), []
    ANNOUNCED.clear()

    async def dead_letter(reason, source, key, value, headers) -> None:
        dead.append((reason, key, value))

    async def announce(instance, summary) -> None:
        ANNOUNCED.append((instance, dict(summary)))

    join = InstanceJoin(
        table, instances, rekeyed, dead_letter, announce, Counter(), max_held=max_held
    )
    return join, table, instances, rekeyed, dead


def _link(join: InstanceJoin, instance: bytes, recording: str, at: float = 1000.0) -> None:
    value = orjson.dumps({"recording_id": recording, "at": at})
    asyncio.run(join.handle(instance, value, {LINK_HEADER: b"1"}, SOURCE, 0))


def _error(join: InstanceJoin, instance: bytes, value: bytes, at: float = 1000.0, headers=None):
    summary = orjson.dumps({"event_id": f"err-{value.decode()}", "at": at, "room": "room-1"})
    routed = {**(headers or {}), SUMMARY_HEADER: summary}
    asyncio.run(join.handle(instance, value, routed, SOURCE, 0))


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
    assert orjson.loads(table[b"inst-1"]) == {"recording_id": "rec-1", "held": []}
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


def test_routing_and_linking_write_to_the_instances_topic_by_instance_id():
    join, _, instances, _, _ = _join()
    asyncio.run(join.route("inst-1", b"error-bytes", {"provider": b"daily"}, {"at": 5.0}))
    asyncio.run(join.link("inst-1", "rec-1", 6.0))
    assert instances.sent == [
        (b"inst-1", b"error-bytes", {"provider": b"daily", SUMMARY_HEADER: b'{"at":5.0}'}),
        (b"inst-1", b'{"recording_id":"rec-1","at":6.0}', {LINK_HEADER: b"1"}),
    ]


def test_an_instance_still_unlinked_a_grace_later_in_event_time_is_a_failed_start():
    join, _, _, rekeyed, _ = _join()
    _error(join, b"inst-never", b"e1", at=1000.0)
    _error(join, b"inst-other", b"e2", at=1000.0 + GRACE_S)  # not past the grace yet
    assert ANNOUNCED == []
    _link(join, b"inst-late", "rec-late", at=1000.0 + GRACE_S + 1)  # moves the watermark
    assert [(instance, summary["room"]) for instance, summary in ANNOUNCED] == [
        ("inst-never", "room-1")
    ]
    _link(join, b"inst-late", "rec-late", at=5000.0)
    assert [instance for instance, _ in ANNOUNCED] == ["inst-never", "inst-other"]  # once each
    _link(join, b"inst-never", "rec-never", at=6000.0)  # a start after all still releases
    assert [(key, value) for key, value, _ in rekeyed.sent] == [(b"rec-never", b"e1")]


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

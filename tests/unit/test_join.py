"""The instance join: events that name only Daily's instance meet their recording."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from streamproc.fold import SourcePosition
from streamproc.providers.decode import LINKED_RECORDING_HEADER
from streamproc.worker.join import LINK_HEADER, InstanceJoin

SOURCE = SourcePosition("recordings.raw", 0, 7)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, dict[str, bytes]]] = []

    async def send(self, *, key: bytes, value: bytes, headers=None) -> None:
        self.sent.append((key, value, dict(headers or [])))


def _join(max_held: int = 50):
    table: dict[bytes, bytes] = {}
    instances, rekeyed, dead = Recorder(), Recorder(), []

    async def dead_letter(reason, source, key, value, headers) -> None:
        dead.append((reason, key, value))

    join = InstanceJoin(table, instances, rekeyed, dead_letter, Counter(), max_held=max_held)
    return join, table, instances, rekeyed, dead


def _link(join: InstanceJoin, instance: bytes, recording: bytes) -> None:
    asyncio.run(join.handle(instance, recording, {LINK_HEADER: b"1"}, SOURCE))


def test_an_error_before_its_start_is_held_then_released_to_its_recording():
    join, table, _, rekeyed, _ = _join()
    asyncio.run(join.handle(b"inst-1", b"error-bytes", {"provider": b"daily"}, SOURCE))
    assert rekeyed.sent == []
    assert len(orjson.loads(table[b"inst-1"])["held"]) == 1  # in the table: survives a restart
    _link(join, b"inst-1", b"rec-1")
    assert rekeyed.sent == [
        (b"rec-1", b"error-bytes", {"provider": b"daily", LINKED_RECORDING_HEADER: b"rec-1"})
    ]
    assert join.counts["join.held"] == 1 and join.counts["join.released"] == 1
    assert orjson.loads(table[b"inst-1"]) == {"recording_id": "rec-1", "held": []}


def test_an_error_after_its_start_goes_straight_to_its_recording():
    join, _, _, rekeyed, _ = _join()
    _link(join, b"inst-1", b"rec-1")
    asyncio.run(join.handle(b"inst-1", b"error-bytes", {}, SOURCE))
    assert [(key, value) for key, value, _ in rekeyed.sent] == [(b"rec-1", b"error-bytes")]


def test_the_first_link_wins_and_a_repeated_link_releases_nothing_twice():
    join, _, _, rekeyed, _ = _join()
    asyncio.run(join.handle(b"inst-1", b"e1", {}, SOURCE))
    _link(join, b"inst-1", b"rec-1")
    _link(join, b"inst-1", b"rec-other")
    asyncio.run(join.handle(b"inst-1", b"e2", {}, SOURCE))
    assert [(key, value) for key, value, _ in rekeyed.sent] == [
        (b"rec-1", b"e1"),
        (b"rec-1", b"e2"),
    ]


def test_an_instance_never_linked_holds_a_bounded_number_then_dead_letters():
    join, _, _, rekeyed, dead = _join(max_held=2)
    for index in range(3):
        asyncio.run(join.handle(b"inst-9", b"e%d" % index, {}, SOURCE))
    assert rekeyed.sent == []
    assert [(key, value) for _, key, value in dead] == [(b"inst-9", b"e2")]
    assert "already holds 2 events" in dead[0][0]


def test_routing_and_linking_write_to_the_instances_topic_by_instance_id():
    join, _, instances, _, _ = _join()
    asyncio.run(join.route("inst-1", b"error-bytes", {"provider": b"daily"}))
    asyncio.run(join.link("inst-1", "rec-1"))
    assert instances.sent == [
        (b"inst-1", b"error-bytes", {"provider": b"daily"}),
        (b"inst-1", b"rec-1", {LINK_HEADER: b"1"}),
    ]

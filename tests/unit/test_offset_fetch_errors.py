"""``raise_offset_fetch_errors``: the group-level error of an OffsetFetch answer is raised as
aiokafka raises the partition-level one; anything else passes through untouched."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as Errors
from aiokafka.consumer.group_coordinator import GroupCoordinator

from streamproc.kafka.coordinator import raise_offset_fetch_errors

TP = TopicPartition("fetched", 0)


class FakeCoordinator:
    """Answers every request with ``answer``; counts how often it was marked dead."""

    group_id = "asked"

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.marked_dead = 0

    async def _send_req(self, request: Any) -> Any:
        return self.answer

    def coordinator_dead(self) -> None:
        self.marked_dead += 1

    async def fetch(self) -> Any:
        return await GroupCoordinator._do_fetch_commit_offsets(self, [TP])  # aiokafka's own


def corrected(answer: Any) -> FakeCoordinator:
    coordinator = FakeCoordinator(answer)
    raise_offset_fetch_errors(SimpleNamespace(_coordinator=coordinator))  # type: ignore[arg-type]
    return coordinator


def answer(error_code: int, topics: list) -> SimpleNamespace:
    return SimpleNamespace(error_code=error_code, topics=topics)


async def test_as_shipped_a_group_level_error_reads_as_nothing_committed() -> None:
    assert await FakeCoordinator(answer(16, [])).fetch() == {}


@pytest.mark.parametrize(
    ("code", "error", "dead"),
    [
        (16, Errors.NotCoordinatorForGroupError, 1),
        (15, Errors.GroupCoordinatorNotAvailableError, 1),
        (14, Errors.GroupLoadInProgressError, 0),
        (30, Errors.GroupAuthorizationFailedError, 0),
    ],
)
async def test_a_group_level_error_is_raised(code: int, error: type, dead: int) -> None:
    coordinator = corrected(answer(code, []))
    with pytest.raises(error):
        await coordinator.fetch()
    assert coordinator.marked_dead == dead


async def test_an_answer_without_error_is_read_as_before() -> None:
    coordinator = corrected(answer(0, [("fetched", [(0, 5, "", 0)])]))
    offsets = await coordinator.fetch()
    assert offsets[TP].offset == 5
    assert coordinator.marked_dead == 0


async def test_other_requests_pass_through() -> None:
    coordinator = corrected(answer(16, []))
    assert (await coordinator._send_req(object())).error_code == 16

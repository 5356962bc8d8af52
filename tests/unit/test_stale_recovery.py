"""A table recovery that ends after the next rebalance has begun (engine correction 10), on a
worker that is never started: the recovery's broker calls are stubbed, the rebalance steps
are Faust's own."""

from __future__ import annotations

from typing import Any

import pytest
from faust.tables.recovery import Recovery
from faust.types import TP

from streamproc.worker.engine import App, StreamprocRecovery

STREAM = TP("raw", 0)


class Worker:
    """An app with one assigned stream partition whose table recovery is under way."""

    def __init__(self) -> None:
        self.app = App("stale-recovery", broker="kafka://127.0.0.1:1")
        self.consumer = self.app.consumer
        self.sought = 0
        self.consumer.assignment = lambda: {STREAM}
        self.consumer.perform_seek = self._seek
        self.app._fetcher.maybe_start = self._nothing

    async def _seek(self) -> None:
        self.sought += 1

    async def _nothing(self) -> None:
        pass

    async def assign(self, generation: int) -> None:
        """aiokafka's generation, then Faust's assignment: streams paused, recovery told."""
        self.app.consumer_generation_id = generation
        self.consumer._set_active_tps({STREAM})
        self.consumer.pause_partitions({STREAM})
        recovery = self.app.tables.recovery
        await recovery.on_rebalance({STREAM}, set(), {STREAM}, generation)
        recovery.signal_recovery_start.clear()  # what its loop does as it takes the assignment

    def revoke(self) -> None:
        """What Faust does first at a revocation: the rebalance starts, the flow stops."""
        self.app.on_rebalance_start()
        self.consumer.stop_flow()
        self.app.flow_control.suspend()
        self.consumer.pause_partitions({STREAM})

    def streaming(self) -> bool:
        return self.consumer.flow_active and STREAM in self.consumer._get_active_partitions()


@pytest.mark.parametrize(
    ("completed_by", "resumed"), [(Recovery, True), (StreamprocRecovery, False)]
)
async def test_a_recovery_ending_after_the_next_revocation_does_not_resume_the_streams(
    completed_by: Any, resumed: bool
):
    """The generation Faust compares changes only at the next assignment, and a rebalance can
    wait seconds between revocation and assignment (a killed member's session): a recovery
    ending then resumed the flow and the stream partitions the revocation had stopped, and
    the worker went on folding mid-rebalance (docs/notes/durability.md, section 13)."""
    worker = Worker()
    await worker.assign(generation=1)
    worker.revoke()

    await completed_by.on_recovery_completed(worker.app.tables.recovery, generation_id=1)

    assert worker.streaming() is resumed
    assert worker.sought == (1 if resumed else 0), "a seek of the old assignment mid-rebalance"


async def test_a_recovery_ending_in_its_own_rebalance_resumes_the_streams_after_the_seek():
    worker = Worker()
    worker.revoke()
    await worker.assign(generation=1)

    await worker.app.tables.recovery.on_recovery_completed(generation_id=1)

    assert worker.streaming()
    assert worker.sought == 1

"""Faust, corrected where it or the embedded broker is wrong, in one place.

Each correction names the defect and the test that shows it; when the defect is gone the
correction goes too. ``docs/durability.md`` has the root-cause notes.

1. ``Recovery._build_highwaters``: a table's recovery reads its changelog up to the high
   watermark, which Faust takes from ListOffsets(latest). Tansu answers that short by up to a
   batch's size minus one (``test_broker_facts.py::test_list_offsets_latest_is_short_after_
   batches``): a memory:// table silently missed the changelog's last entries and a rocksdb://
   store raised ``ConsistencyError`` (persisted offset above the "end") and the worker died.
   Here the end comes from a fetch (``streamproc.kafka.offsets``).
2. ``Recovery._build_offsets``: a local rocksdb store that is really ahead of its changelog
   (the topic was recreated, or an in-memory broker restarted under a kept data dir) is
   discarded and rebuilt from the changelog, with a warning, instead of crash-looping.
3. ``Consumer``: after a seek (the seek to committed offsets that ends every rebalance)
   Faust still delivered records of the same partition that were fetched before it. Its read
   offset then jumped past the seek target, it marked the skipped offsets as a "gap" (done,
   so committed), and dropped the re-fetched records as already read: records never
   processed, yet committed (faust-streaming #216/#221 are the same family;
   ``tests/integration/test_faust_facts.py`` reproduces the jump). Here a record of a
   partition sought after its batch was fetched is not delivered; the seek fetches it again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streamproc.kafka.offsets import read_log_ends

log = logging.getLogger(__name__)


class Consumer(aiokafka_driver.Consumer):
    """Faust's consumer, never delivering a record fetched before its partition's last seek."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seeks: Counter[TP] = Counter()
        self.stale_records_discarded = 0

    def _sought(self, tps: Any) -> None:
        self._seeks.update(tps)

    async def _seek(self, partition: TP, offset: int) -> None:
        self._sought([partition])
        await super()._seek(partition, offset)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self._sought(partitions)
        await super().seek_wait(partitions)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        self._sought(self.assignment())
        return await super().seek_to_committed()

    async def getmany(
        self,
        timeout: float,  # noqa: ASYNC109 (Faust's signature)
    ) -> AsyncIterator[tuple[TP, Any]]:
        """The epoch of a batch is read at its first record, i.e. right after the fetch; a
        seek counted before the fetch returns at worst leaves Faust's old behaviour."""
        seeks: Counter[TP] | None = None
        async for tp, message in super().getmany(timeout):
            if seeks is None:
                seeks = self._seeks.copy()
            if self._seeks[tp] != seeks[tp]:
                self.stale_records_discarded += 1
                continue
            yield tp, message


class Transport(aiokafka_driver.Transport):
    Consumer = Consumer


class StreamprocRecovery(Recovery):
    async def _build_highwaters(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        """Faust's ``highwater - 1`` convention, with the end read from a fetch."""
        ends = await read_log_ends(
            _bootstrap(self.app), [TopicPartition(tp.topic, tp.partition) for tp in tps]
        )
        destination.clear()
        destination.update({tp: ends[TopicPartition(tp.topic, tp.partition)] - 1 for tp in tps})
        log.debug("%s changelog ends: %s", title, dict(destination))

    async def _build_offsets(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active":
            return
        stale = {
            tp
            for tp in tps
            if destination[tp] is not None and destination[tp] > self.active_highwaters[tp]
        }
        for table in {self.tp_to_table[tp] for tp in stale}:
            log.warning(
                "the local store of table %s is ahead of its changelog (%s); "
                "discarding it and rebuilding from the changelog",
                table.name,
                ", ".join(
                    f"partition {tp.partition}: stored {destination[tp]}, "
                    f"changelog ends at {self.active_highwaters[tp]}"
                    for tp in sorted(stale)
                    if self.tp_to_table[tp] is table
                ),
            )
            table.data.reset_state()
            for tp in self.actives_for_table[table]:
                destination[tp] = -1
            for tp in self.standbys_for_table[table]:
                self.standby_offsets[tp] = -1


def _bootstrap(app: Any) -> str:
    return ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker_consumer)


class StreamprocTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = StreamprocRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class App(faust.App):
    """A Faust app on the corrected consumer and recovery."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, TableManager=StreamprocTableManager, **kwargs)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

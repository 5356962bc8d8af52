"""A record right after a gap in its partition's offsets (a transaction marker, an aborted
record, a compacted one) and Faust's commit bookkeeping (engine correction 16).

Faust notes the offsets it did not read between two records as a gap, done: with
exactly-once every input partition written transactionally has one per transaction marker.
As shipped the gap runs up to *and including* the record after it, so that record is in the
acknowledged offsets twice once it is acked, and the run of consecutive offsets that decides
the commit stops at the duplicate: the commit lags behind the acknowledgements by a marker
each time, while the records' outputs are already in the transaction it commits. A crash
then left them committed without their offsets (the chaos suite's exactly-once cluster run:
download messages read twice).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streamproc.worker.engine import App, StreamprocConsumer

TOPIC = "fetch"
PARTITION = TP(TOPIC, 2)


def consumer_of(consumer_class: type[Any]) -> Any:
    app = App("gaps", broker="kafka://127.0.0.1:1")
    app.topics._acking_topics.add(TOPIC)

    async def nothing(*args: Any) -> None:
        pass

    return consumer_class(
        app.transport,
        callback=nothing,
        on_partitions_revoked=nothing,
        on_partitions_assigned=nothing,
    )


async def read_and_ack(consumer: Any, offsets: list[int]) -> None:
    """As ``_drain_messages`` reads them: a jump in offsets is noted as a gap; then acked."""
    read = None
    for offset in offsets:
        if read is not None and offset - read > 1:
            await consumer._add_gap(PARTITION, read + 1, offset)
        read = offset
        record = ConsumerRecord(TOPIC, 2, offset, 0, 0, b"k", b"v", None, 1, 1, ())
        message = consumer._to_message(PARTITION, record)
        consumer.track_message(message)
        consumer.ack(message)


@pytest.mark.parametrize(
    ("consumer_class", "commit"), [(faust_aiokafka.Consumer, 59), (StreamprocConsumer, 105)]
)
async def test_records_after_a_marker_are_committed_with_those_before_it(consumer_class, commit):
    """Offsets 50-56, a marker at 57, 58-104, all acked: everything up to 104 is done."""
    consumer = consumer_of(consumer_class)
    consumer._committed_offset[PARTITION] = 50
    await read_and_ack(consumer, [*range(50, 57), *range(58, 105)])
    assert consumer._new_offset(PARTITION) == commit

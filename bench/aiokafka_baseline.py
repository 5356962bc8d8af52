"""Ceiling for the worker benchmark: a bare aiokafka loop, no framework.

Consume a batch, decode each event with orjson, fold it into a dict (last status and a count
per key), produce two messages per event (a state and a lifecycle topic, acks=all), wait for
the producer, commit. What a hand-written consumer costs with the same outputs; the worker's
ratio to it is what Faust, tables with changelogs and our safety cost. Tuned to its best on
these machines: batches of up to 2,000 records, one wait for the producer per batch
(issue 27's outside measurement: 51-54k events/s there, where batches of 1,000 gave less).
Run by ``worker_throughput.py``, not by hand.
"""

import asyncio
import os

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def main() -> None:
    bootstrap = os.environ["BENCH_BOOTSTRAP"]
    consumer = AIOKafkaConsumer(
        os.environ["BENCH_TOPIC"],
        bootstrap_servers=bootstrap,
        group_id=os.environ["BENCH_GROUP"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=int(os.environ.get("BENCH_MAX_POLL", "2000")),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    state_topic, lifecycle_topic = os.environ["BENCH_STATE_TOPIC"], os.environ["BENCH_LC_TOPIC"]
    await consumer.start()
    await producer.start()
    states: dict[bytes, dict] = {}
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            sent = []
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value)
                    previous = states.get(record.key, {"events": 0})
                    status = event.get("data", {}).get("status") or event.get("type")
                    state = {"events": previous["events"] + 1, "status": status}
                    states[record.key] = state
                    value = orjson.dumps(state)
                    sent.append(await producer.send(state_topic, value, key=record.key))
                    sent.append(await producer.send(lifecycle_topic, value, key=record.key))
            if sent:
                await asyncio.gather(*sent)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())

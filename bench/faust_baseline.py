"""Baseline for the worker benchmark: the plainest Faust agent that folds into a Table.

One event at a time, the value stored as-is: what any Faust fold costs before our decoding,
validation and fold logic. Run by ``worker_throughput.py``, not by hand.
"""

import os

import faust

app = faust.App(
    os.environ["BENCH_GROUP"],
    broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ["BENCH_DATADIR"],
    topic_partitions=int(os.environ["BENCH_PARTITIONS"]),
    web_port=int(os.environ["BENCH_WEB_PORT"]),
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
    key_serializer="raw",
    value_serializer="raw",
)
topic = app.topic(os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes)
table = app.Table("baseline", default=None, key_type=bytes, value_type=bytes)


@app.agent(topic)
async def fold(stream):
    async for event in stream.events():
        table[event.message.key] = event.message.value


if __name__ == "__main__":
    worker = faust.Worker(app, loglevel="WARNING")
    worker.spinner = None  # as streamproc's worker does: at WARNING it puts the root at DEBUG
    worker.execute_from_commandline()

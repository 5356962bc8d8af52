"""A plain Faust app with ``processing_guarantee="exactly_once"`` (no streamproc pipeline):
each input record is written to a table (its changelog) and sent, under the key the record's
value names (so a test chooses the partition), to an output topic the app does not read and
to a ``loop`` topic it reads (and ignores), then appended to a file.

``python plain_faust_eos.py BOOTSTRAP APP_ID IN OUT LOG WEB_PORT DATA_DIR FLAVOUR COMMIT_S``;
FLAVOUR ``faust`` is faust.App as shipped, ``streamproc`` is ``streamproc.worker.engine.App``.
"""

import os
import sys

from faust_app import plain_app

from streamproc.kafka.partitions import KeyHashPartitioner

bootstrap, app_id, in_name, out_name, log_path, web_port, data_dir, flavour, commit_s = sys.argv[
    1:10
]
app = plain_app(
    flavour,
    app_id,
    bootstrap,
    data_dir,
    web_port,
    processing_guarantee="exactly_once",
    topic_partitions=2,
    broker_commit_interval=float(commit_s),
    producer_partitioner=KeyHashPartitioner(),
)
source = app.topic(in_name, partitions=2, key_type=bytes, value_type=bytes)
output = app.topic(out_name, partitions=2, key_type=bytes, value_type=bytes)
loop = app.topic(out_name + "-loop", partitions=2, key_type=bytes, value_type=bytes)
seen = app.Table("seen", default=None, partitions=2, key_type=bytes, value_type=bytes)
processed = os.open(log_path, os.O_APPEND | os.O_WRONLY | os.O_CREAT)


@app.agent(source)
async def forward(stream):
    async for event in stream.events():
        message = event.message
        seen[message.key] = message.value
        await output.send(key=message.value, value=message.key)
        await loop.send(key=message.value, value=message.key)
        os.write(processed, b"%d %d\n" % (message.partition, message.offset))


@app.agent(loop)
async def ignore(stream):
    async for _ in stream:
        pass


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "info"]  # "Worker ready" tells a test
    app.main()

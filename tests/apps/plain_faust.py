"""A plain Faust app (no streamproc pipeline): fold a topic into a table and append every
record it processes to a file, so a test can see which records were never processed.

``python plain_faust.py BOOTSTRAP APP_ID TOPIC LOG WEB_PORT DATA_DIR FLAVOUR WORKER_NAME``;
FLAVOUR ``faust`` is faust.App as shipped, ``streamproc`` is ``streamproc.worker.engine.App``.
"""

import asyncio
import os
import sys

from faust_app import plain_app

bootstrap, app_id, topic_name, log_path, web_port, data_dir, flavour, worker = sys.argv[1:9]
app = plain_app(
    flavour, app_id, bootstrap, data_dir, web_port, topic_partitions=4, broker_commit_interval=0.5
)
topic = app.topic(topic_name, partitions=4, key_type=bytes, value_type=bytes)
counts = app.Table("counts", default=None, partitions=4, key_type=bytes, value_type=bytes)
processed = os.open(log_path, os.O_APPEND | os.O_WRONLY | os.O_CREAT)


@app.agent(topic)
async def fold(stream):
    async for event in stream.events():
        message = event.message
        counts[message.key] = b"%d" % (int(counts.get(message.key) or 0) + 1)
        os.write(processed, b"%s %d %d\n" % (worker.encode(), message.partition, message.offset))
        await asyncio.sleep(0.001)  # a little work per record, so queues fill as in production


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()

"""``streamproc worker``: prepare the topics, then run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from aiokafka.errors import KafkaError

from streamproc.logs import logging_config
from streamproc.settings import Settings
from streamproc.worker.topics import prepare_topics

log = logging.getLogger(__name__)
STARTUP_WAIT_S = 30.0
"""A broker that is restarting (or starting beside the worker) gets this long to answer."""


def serve_worker(settings: Settings) -> int:
    import faust

    from streamproc.worker.app import build_app

    deadline = time.monotonic() + STARTUP_WAIT_S
    while True:
        try:
            partitions = asyncio.run(prepare_topics(settings))
            break
        except (KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                log.error("cannot reach Kafka at %s: %r", settings.kafka_bootstrap, exc)
                return 1
            log.warning(
                "Kafka at %s not reachable yet (%r); retrying", settings.kafka_bootstrap, exc
            )
            time.sleep(1.0)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = build_app(settings, partitions)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        quiet=settings.log_level != "DEBUG",
    )
    worker.execute_from_commandline()
    return 0

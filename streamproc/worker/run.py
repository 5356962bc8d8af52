"""``streamproc worker``: prepare the topics, then run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiokafka.errors import KafkaError

from streamproc.settings import Settings
from streamproc.worker.topics import prepare_topics

log = logging.getLogger(__name__)


def serve_worker(settings: Settings) -> int:
    import faust

    from streamproc.worker.app import build_app

    try:
        partitions = asyncio.run(prepare_topics(settings))
    except (KafkaError, OSError) as exc:
        log.error("cannot reach Kafka at %s: %r", settings.kafka_bootstrap, exc)
        return 1
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = build_app(settings, partitions)
    worker = faust.Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()
    return 0

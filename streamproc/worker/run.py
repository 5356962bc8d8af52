"""``streamproc worker``: prepare the topics, then run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from streamproc.kafka.topics import Replication, TopicSpec, ensure_topics
from streamproc.kafka.transactions import transactions_refused
from streamproc.logs import logging_config
from streamproc.settings import Settings
from streamproc.worker.topics import faust_topics, prepare_topics

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_WAIT_S = 30.0
"""A broker that is restarting (or starting beside the worker) gets this long to answer."""


def serve_worker(settings: Settings) -> int:
    from streamproc.worker.app import build_app

    use_uvloop()
    deadline = time.monotonic() + STARTUP_WAIT_S
    if settings.processing_guarantee == "exactly_once":
        refused = _while_reachable(settings, deadline, lambda: _transactions_refused(settings))
        if refused is None:
            return 1
        if refused:
            log.error(
                "STREAMPROC_PROCESSING_GUARANTEE=exactly_once needs Kafka transactions, which "
                "the broker at %s cannot run (%s); use at_least_once (the default) with it",
                settings.kafka_bootstrap,
                refused,
            )
            return 2
    partitions = _while_reachable(settings, deadline, lambda: prepare_topics(settings))
    if partitions is None:
        return 1
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = build_app(settings, partitions)
    specs = faust_topics(app)
    if not _while_reachable(settings, deadline, lambda: _created(settings, specs)):
        return 1
    faust_worker(app, settings).execute_from_commandline()
    return 0


def use_uvloop() -> None:
    """Every event loop the worker makes from here on is uvloop's (Faust's own switch; its consumer
    thread's loop too). Faust hands each record through several tasks and callbacks; on uvloop the
    worker spent ~15 % less CPU per event with Faust's race and ~4 % less with direct delivery than
    on asyncio's pure-Python loop (docs/notes/performance-history.md, "Worker and edge, 2026-12-02
    evening")."""
    import mode.loop

    mode.loop.use("uvloop")


def faust_worker(app: Any, settings: Settings) -> Any:
    """Faust's worker without its terminal spinner: at WARNING and above the spinner sets the
    root logger to DEBUG for the worker's lifetime (a handler of its own spins on every
    record), so every ``log.debug`` of ours built a record per event, ~6 % of a busy
    worker's samples (docs/notes/performance-history.md, "Worker, 2026-12-02 afternoon")."""
    import faust

    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        quiet=settings.log_level != "DEBUG",
    )
    worker.spinner = None
    return worker


def _while_reachable(
    settings: Settings, deadline: float, step: Callable[[], Awaitable[T]]
) -> T | None:
    """``step``'s result, retried while Kafka is not reachable and ``deadline`` not passed;
    None (logged) once it is."""
    while True:
        try:
            return asyncio.run(step())
        except (KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                log.error("cannot reach Kafka at %s: %r", settings.kafka_bootstrap, exc)
                return None
            log.warning(
                "Kafka at %s not reachable yet (%r); retrying", settings.kafka_bootstrap, exc
            )
            time.sleep(1.0)


async def _transactions_refused(settings: Settings) -> str:
    """Why the broker cannot run this worker's transactions; empty if it can."""
    refused = await transactions_refused(settings.kafka_bootstrap, f"{settings.app_id}-probe")
    return refused or ""


async def _created(settings: Settings, specs: list[TopicSpec]) -> bool:
    await ensure_topics(settings.kafka_bootstrap, specs, replication=Replication.of(settings))
    return True

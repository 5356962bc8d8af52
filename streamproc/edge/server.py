"""Serve the edge with uvicorn (httptools + uvloop when installed): one process, or
``edge_processes`` sharing one socket (uvicorn's workers, each its own app and producer).

Several processes keep one ``/metrics``: prometheus_client's multiprocess mode, its values
in files under a directory this supervisor creates before the processes start and removes
when they have ended; any process's ``/metrics`` sums them all.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from functools import partial
from typing import Any

import uvicorn

from streamproc.edge.app import EdgeApp
from streamproc.edge.metrics import MULTIPROCESS_DIR
from streamproc.edge.protocol import HeadDeadlineProtocol
from streamproc.logs import logging_config
from streamproc.settings import Settings

log = logging.getLogger(__name__)


def serve_edge(settings: Settings) -> int:
    if settings.edge_processes > 1:
        return _serve_processes(settings)
    server = uvicorn.Server(uvicorn.Config(EdgeApp(settings), **_options(settings)))
    log.info("edge serving http://%s:%d", settings.edge_host, settings.edge_port)
    server.run()
    return 0 if server.started else 1


def edge_from_environment() -> EdgeApp:
    """The app of one of several edge processes: the settings its supervisor was started
    with (the environment, which the processes inherit)."""
    return EdgeApp(Settings.from_env())


def _serve_processes(settings: Settings) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="streamproc-edge-metrics-")
    os.environ[MULTIPROCESS_DIR] = metrics_dir
    log.info(
        "edge serving http://%s:%d in %d processes",
        settings.edge_host,
        settings.edge_port,
        settings.edge_processes,
    )
    try:
        uvicorn.run(
            f"{__name__}:{edge_from_environment.__name__}",
            factory=True,
            workers=settings.edge_processes,
            **_options(settings),
        )
        return 0
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.edge_host,
        "port": settings.edge_port,
        "lifespan": "on",
        "http": partial(HeadDeadlineProtocol, header_timeout_s=settings.header_timeout_s),
        "access_log": False,
        "server_header": False,
        "log_config": logging_config(settings.log_level, settings.log_format),
        "log_level": None,
    }

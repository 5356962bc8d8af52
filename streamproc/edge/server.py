"""Serve the edge with uvicorn (httptools + uvloop when installed)."""

from __future__ import annotations

import logging
from functools import partial

import uvicorn

from streamproc.edge.app import EdgeApp
from streamproc.edge.protocol import HeadDeadlineProtocol
from streamproc.logs import logging_config
from streamproc.settings import Settings

log = logging.getLogger(__name__)


def serve_edge(settings: Settings) -> int:
    app = EdgeApp(settings)
    config = uvicorn.Config(
        app,
        host=settings.edge_host,
        port=settings.edge_port,
        lifespan="on",
        http=partial(HeadDeadlineProtocol, header_timeout_s=settings.header_timeout_s),
        access_log=False,
        server_header=False,
        log_config=logging_config(settings.log_level, settings.log_format),
        log_level=None,
    )
    server = uvicorn.Server(config)
    log.info("edge serving http://%s:%d", settings.edge_host, settings.edge_port)
    server.run()
    return 0 if server.started else 1

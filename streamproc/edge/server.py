"""Serve the edge with uvicorn (httptools + uvloop when installed)."""

from __future__ import annotations

import uvicorn

from streamproc.edge.app import EdgeApp
from streamproc.settings import Settings


def serve_edge(settings: Settings) -> int:
    app = EdgeApp(settings)
    config = uvicorn.Config(
        app,
        host=settings.edge_host,
        port=settings.edge_port,
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level="info",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1

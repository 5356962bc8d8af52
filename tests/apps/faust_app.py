"""The Faust app the plain apps here share: ``faust.App`` as shipped (FLAVOUR ``faust``) or
``streamproc.worker.engine.App`` (``streamproc``), with Faust's own per-record delivery in
both (the facts they show are about Faust's paths), bytes keys and values, small timeouts."""

from typing import Any

import faust

from streamproc.worker import engine


def plain_app(
    flavour: str, app_id: str, bootstrap: str, data_dir: str, web_port: str, **settings: Any
) -> faust.App:
    options = {"direct_delivery": False} if flavour == "streamproc" else {}
    app_class = engine.App if flavour == "streamproc" else faust.App
    return app_class(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        topic_replication_factor=1,
        broker_session_timeout=6,
        broker_heartbeat_interval=2,
        consumer_auto_offset_reset="earliest",
        web_host="127.0.0.1",
        web_port=int(web_port),
        key_serializer="raw",
        value_serializer="raw",
        **options,
        **settings,
    )

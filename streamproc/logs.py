"""Logging for every streamproc process: our messages at the chosen level, libraries quiet.

A stream processor's terminal should show what streamproc decided, not every HTTP request
httpx made or every subscription table aiokafka printed. Libraries log at WARNING unless the
level is DEBUG (``-v`` or ``STREAMPROC_LOG_LEVEL=DEBUG``); ``json`` format writes one JSON
object per line (python-json-logger) for log pipelines. The edge (uvicorn) and the worker
(Faust's ``mode``) take the same ``dictConfig`` dictionary, so all three agree.
"""

from __future__ import annotations

import logging.config
from typing import Any

from streamproc.settings import LOG_FORMATS

LIBRARIES = (
    "aiokafka",
    "aiobotocore",
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "faust",
    "mode",
    "httpx",
    "httpcore",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "moto",
    "werkzeug",
    "asyncio",
)
"""Loggers kept at WARNING unless the level is DEBUG."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"


RETRIED_BY_AIOKAFKA = ("Group Coordinator Request failed",)
"""aiokafka messages logged at ERROR for an error it then retries by itself."""
COORDINATOR_LOOKED_UP_AGAIN = "Marking the coordinator dead"
"""aiokafka's WARNING before it looks the group's coordinator up again: a fresh Kafka's first
offset read answers NOT_COORDINATOR while ``__consumer_offsets`` settles, and since that
answer is raised and retried (``streamproc/kafka/coordinator.py``) ``streamproc status``
printed this line before its report."""


class RetriedErrors(logging.Filter):
    """Drops aiokafka's ERROR lines about a retriable error it goes on to retry (a fresh
    Kafka answers GroupCoordinatorNotAvailable while it creates ``__consumer_offsets``, and
    ``streamproc status`` printed an ERROR for a lookup that then worked), and its WARNING
    before a coordinator lookup. Kept at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka"):
            return True
        if record.levelno == logging.WARNING:
            return not str(record.msg).startswith(COORDINATOR_LOOKED_UP_AGAIN)
        if record.levelno < logging.ERROR:
            return True
        if not str(record.msg).startswith(RETRIED_BY_AIOKAFKA):
            return True
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return not getattr(error, "retriable", False)


def logging_config(level: str = "INFO", log_format: str = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary for ``level`` and ``log_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    library_level = "DEBUG" if level == "DEBUG" else "WARNING"
    formatter: dict[str, Any] = {"format": TEXT_FORMAT}
    if log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"streamproc": formatter},
        "filters": {"retried": {"()": RetriedErrors}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "streamproc",
                "stream": "ext://sys.stderr",
                "filters": [] if level == "DEBUG" else ["retried"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            name: {"level": library_level, "handlers": [], "propagate": True} for name in LIBRARIES
        },
    }


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    logging.config.dictConfig(logging_config(level, log_format))

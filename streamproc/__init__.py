"""streamproc: signed recording webhooks in, a replayable Kafka log and derived data out."""

__version__ = "0.1.0"

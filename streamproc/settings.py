"""One settings object, built from ``STREAMPROC_*`` environment variables and validated once.

Every bad value is reported with its variable name, what was given and what is expected,
so ``streamproc edge`` can exit with one readable line instead of a traceback.
"""

from __future__ import annotations

import base64
import binascii
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

PREFIX = "STREAMPROC_"
TABLE_STORES = ("memory://", "rocksdb://")
GUARANTEES = ("at_least_once", "exactly_once")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
WORKER_ROLES = ("all", "fold", "fetch")
IDEMPOTENCE = ("auto", "on", "off")
LOG_FORMATS = ("text", "json")
KEY_FIELDS = ("provider", "recording_id", "room", "filename")
"""Placeholders an object-key template may use."""
T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Secret:
    """One active signing key of a provider. ``key_id`` is safe to log; ``key`` is not."""

    key_id: str
    key: bytes = field(repr=False)


STALL_AFTER_S = 6 * 3600.0
"""Longer than the longest recording Daily makes, so only a lost ending stalls one."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the edge (and later the worker) needs, with defaults that run locally."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma-separated."""
    raw_topic: str = "recordings.raw"
    """The raw topic, the log every derivation starts from (created if missing)."""
    raw_topic_partitions: int = 4
    """Partitions of the raw topic when streamproc creates it; every derived topic and table gets
    as many."""
    topic_replication_factor: int = 1
    """Replicas of every topic streamproc creates (the edge, the worker, ``streamproc topics``); 3
    on a production cluster."""
    topic_min_insync_replicas: int | None = None
    """``min.insync.replicas`` of the topics it creates (2 with RF 3); unset: the broker's."""
    idempotence: str = "auto"
    """The edge's producer: ``on`` idempotent (a produce retried after a leader change is written
    once), ``off`` plain, ``auto`` idempotent where the broker can (Kafka) and plain where it
    cannot (Tansu)."""
    edge_host: str = "127.0.0.1"
    """Where the edge listens (the container image sets 0.0.0.0)."""
    edge_port: int = 8080
    """The edge's port."""
    edge_processes: int = 1
    """Edge processes sharing the port (uvicorn's workers: one socket, each process accepts
    from it), one per core the edge may use. Each has its own producer and redelivery
    window; ``/metrics`` answers for all of them."""
    daily_secrets: tuple[Secret, ...] = ()
    """Comma-separated ``[key_id:]base64-secret`` (Daily's webhook ``hmac``); ids default to k0,
    k1... Daily is disabled (404) without one, except for its unsigned endpoint check."""
    openvidu_secrets: tuple[Secret, ...] = ()
    """Comma-separated ``[key_id:]api-key``; OpenVidu is disabled (404) without one."""
    timestamp_tolerance_s: float = 300.0
    """Allowed difference between a webhook's signed timestamp and this clock, seconds."""
    max_body_bytes: int = 1024 * 1024
    """Largest accepted webhook body (413 above it); also the largest raw record the
    worker folds."""
    publish_timeout_s: float = 5.0
    """How long a webhook waits for Kafka's acknowledgement before the edge answers 503."""
    header_timeout_s: float = 10.0
    """How long a request's line and headers may take to arrive (408 after)."""
    body_timeout_s: float = 30.0
    """How long a request's body may take to arrive (408 after)."""
    retry_after_s: int = 5
    """``Retry-After`` of a 503."""
    dedupe_window_s: float = 600.0
    """Seconds a webhook id is remembered, so a provider's redelivery is answered 200 without a
    second publish."""
    dedupe_max_entries: int = 100_000
    """Webhook ids remembered at most (the oldest are forgotten first)."""
    standard_webhooks_mapping: str | None = None
    """A mapping file defining a Standard Webhooks provider (edge and worker; read by
    ``providers.enabled_providers``, which the command line calls at start-up)."""
    standard_webhooks_secrets: tuple[Secret, ...] = ()
    """Comma-separated ``[key_id:]whsec_...`` for the mapped provider."""

    app_id: str = "streamproc"
    """Faust app id = the consumer group; also names the table changelogs, the re-keyed and the
    instances topics."""
    state_topic: str = "recordings.state"
    """Latest state per recording (compacted)."""
    lifecycle_topic: str = "recordings.lifecycle"
    """One message per status transition of a recording."""
    downloads_topic: str = "recordings.downloads"
    """One message per downloaded (or failed) recording."""
    dlq_topic: str = "recordings.dlq"
    """Dead letters: every unusable record, with its reason and its bytes."""
    fetch_topic: str = "recordings.fetch-requests"
    """Download requests, from the fold to the fetch agent."""
    table_store: str = "memory://"
    """Where the worker keeps its tables: ``memory://`` (rebuilt from the changelog at start) or
    ``rocksdb://`` (on disk under the data directory)."""
    data_dir: str = ".streamproc/worker"
    """Faust's data directory (RocksDB tables); one per worker."""
    worker_web_host: str = "127.0.0.1"
    """Faust's web server, serving the worker's ``/metrics`` (the container image listens on
    0.0.0.0)."""
    worker_web_port: int = 6066
    """Its port; give each worker on a machine its own."""
    session_timeout_s: float = 30.0
    """The consumer group's session timeout: how long a silent worker keeps its partitions."""
    commit_interval_s: float = 1.0
    """How often the worker commits offsets, seconds."""
    processing_guarantee: str = "at_least_once"
    """``at_least_once``, or ``exactly_once`` on Apache Kafka (transactions)."""
    stall_after_s: float = STALL_AFTER_S
    """Event time after a recording's last event at which an open recording is declared ``stalled``
    (6 h: longer than the longest recording Daily makes)."""
    fold_batch: int = 100
    """Events a fold agent takes at a time (outputs sent together, the table written once per key
    per batch; a batch waits at most 20 ms for more); 1 folds one at a time."""
    fetch_max_wait_ms: int = 1500
    """How long the broker may hold the worker's fetch when nothing new came (Faust's 1500). Kafka
    answers a held fetch as soon as a record arrives, so on Kafka this adds nothing to a quiet
    stream's latency; Tansu holds it for about half the wait whatever arrives, and on S3 storage
    answers a short one with nothing, so keep 1500 there."""
    direct_delivery: bool = True
    """``1``: records that need no wait go to the fold without Faust's four-task race per record
    (``worker/delivery.py``; ~1.5x the events/s); ``0``: Faust's race."""
    worker_role: str = "all"
    """``fold``: only the fold agents (raw, re-keyed, instances; the tables); ``fetch``: only the
    downloads, in a group of their own (``<APP_ID>-fetch``); ``all``: both in one process. Run
    fold and fetch workers apart to scale them apart and keep downloads off the fold's event
    loop; ``streamproc up`` runs one of each unless this is set."""
    log_level: str = "INFO"
    """streamproc's own messages; libraries log at WARNING unless this is DEBUG (``-v`` sets it)."""
    log_format: str = "text"
    """``text``, or ``json``: one JSON object per line (``time``, ``level``, ``logger``,
    ``message``), as ``--log-format json``."""

    fetch_concurrency: int = 8
    """Downloads at a time, per fetch worker: each one that ends makes room for the next."""
    fetch_attempts: int = 5
    """Tries per object before its download is reported failed."""
    fetch_backoff_s: float = 0.5
    """The first backoff between tries (doubling), seconds."""
    fetch_timeout_s: float = 60.0
    """Wait limit per S3 read, seconds."""
    fetch_retry_delays_s: tuple[float, ...] = (60.0, 600.0, 3600.0)
    """Waits before each later try of a download that failed in a way that may heal (S3 5xx,
    timeouts, a missing or forbidden object), comma-separated seconds; the request waits in a
    retry topic, not in the fetch topic's way. After the last, it is dead-lettered with every
    attempt's reason. ``none``: dead-letter at once."""
    s3_endpoint_url: str | None = None
    """The S3 API endpoint; unset: AWS. Credentials come from the usual ``AWS_*`` variables."""
    s3_region: str = "us-east-1"
    """The S3 region."""
    s3_bucket: str = "recordings"
    """The bucket recordings are read from."""
    sink: str = ".streamproc/downloads"
    """Where downloads go: a directory, or ``s3://bucket/prefix``."""
    openvidu_key_template: str = "{room}/{filename}"
    """S3 key of an OpenVidu recording; placeholders ``{provider}``, ``{recording_id}``,
    ``{room}``, ``{filename}``."""

    def secrets_for(self, provider: str) -> tuple[Secret, ...]:
        """The keys of an enabled provider: a built-in one's, or else the mapped one's."""
        built_in = {"daily": self.daily_secrets, "openvidu": self.openvidu_secrets}
        if provider in built_in:
            return built_in[provider]
        return self.standard_webhooks_secrets if self.standard_webhooks_mapping else ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate all variables; raise one SettingsError naming the first bad one."""
        reader = _EnvReader(os.environ if env is None else env)
        defaults = cls()
        settings = cls(
            standard_webhooks_mapping=reader.text("STANDARD_WEBHOOKS_MAPPING", "") or None,
            standard_webhooks_secrets=reader.secrets(
                "STANDARD_WEBHOOKS_SECRETS", decode=decode_standard_webhooks_secret
            ),
            kafka_bootstrap=reader.text("KAFKA_BOOTSTRAP", defaults.kafka_bootstrap),
            raw_topic=reader.text("RAW_TOPIC", defaults.raw_topic),
            raw_topic_partitions=reader.integer(
                "RAW_TOPIC_PARTITIONS", defaults.raw_topic_partitions, low=1, high=10_000
            ),
            topic_replication_factor=reader.integer(
                "TOPIC_REPLICATION_FACTOR", defaults.topic_replication_factor, low=1, high=32
            ),
            topic_min_insync_replicas=reader.optional_integer(
                "TOPIC_MIN_INSYNC_REPLICAS", low=1, high=32
            ),
            idempotence=reader.choice("IDEMPOTENCE", defaults.idempotence, IDEMPOTENCE),
            edge_host=reader.text("EDGE_HOST", defaults.edge_host),
            edge_port=reader.integer("EDGE_PORT", defaults.edge_port, low=0, high=65535),
            edge_processes=reader.integer(
                "EDGE_PROCESSES", defaults.edge_processes, low=1, high=64
            ),
            daily_secrets=reader.secrets("DAILY_SECRETS", decode=_decode_base64_secret),
            openvidu_secrets=reader.secrets("OPENVIDU_SECRETS", decode=str.encode),
            timestamp_tolerance_s=reader.number(
                "TIMESTAMP_TOLERANCE_S", defaults.timestamp_tolerance_s, low=1.0
            ),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", defaults.max_body_bytes, low=64),
            publish_timeout_s=reader.number(
                "PUBLISH_TIMEOUT_S", defaults.publish_timeout_s, low=0.1, high=300.0
            ),
            header_timeout_s=reader.number(
                "HEADER_TIMEOUT_S", defaults.header_timeout_s, low=0.1, high=3600.0
            ),
            body_timeout_s=reader.number(
                "BODY_TIMEOUT_S", defaults.body_timeout_s, low=0.1, high=3600.0
            ),
            retry_after_s=reader.integer("RETRY_AFTER_S", defaults.retry_after_s, low=1, high=3600),
            dedupe_window_s=reader.number("DEDUPE_WINDOW_S", defaults.dedupe_window_s, low=0.0),
            dedupe_max_entries=reader.integer(
                "DEDUPE_MAX_ENTRIES", defaults.dedupe_max_entries, low=0
            ),
            app_id=reader.text("APP_ID", defaults.app_id),
            state_topic=reader.text("STATE_TOPIC", defaults.state_topic),
            lifecycle_topic=reader.text("LIFECYCLE_TOPIC", defaults.lifecycle_topic),
            downloads_topic=reader.text("DOWNLOADS_TOPIC", defaults.downloads_topic),
            dlq_topic=reader.text("DLQ_TOPIC", defaults.dlq_topic),
            fetch_topic=reader.text("FETCH_TOPIC", defaults.fetch_topic),
            table_store=reader.choice("TABLE_STORE", defaults.table_store, TABLE_STORES),
            data_dir=reader.text("DATA_DIR", defaults.data_dir),
            worker_web_host=reader.text("WORKER_WEB_HOST", defaults.worker_web_host),
            worker_web_port=reader.integer(
                "WORKER_WEB_PORT", defaults.worker_web_port, low=0, high=65535
            ),
            session_timeout_s=reader.number(
                "SESSION_TIMEOUT_S", defaults.session_timeout_s, low=1.0, high=3600.0
            ),
            commit_interval_s=reader.number(
                "COMMIT_INTERVAL_S", defaults.commit_interval_s, low=0.05, high=600.0
            ),
            processing_guarantee=reader.choice(
                "PROCESSING_GUARANTEE", defaults.processing_guarantee, GUARANTEES
            ),
            stall_after_s=reader.number("STALL_AFTER_S", defaults.stall_after_s, low=1.0),
            fold_batch=reader.integer("FOLD_BATCH", defaults.fold_batch, low=1, high=100_000),
            fetch_max_wait_ms=reader.integer(
                "FETCH_MAX_WAIT_MS", defaults.fetch_max_wait_ms, low=1, high=60_000
            ),
            direct_delivery=reader.choice(
                "DIRECT_DELIVERY", "1" if defaults.direct_delivery else "0", ("0", "1")
            )
            == "1",
            worker_role=reader.choice("WORKER_ROLE", defaults.worker_role, WORKER_ROLES),
            log_level=reader.choice("LOG_LEVEL", defaults.log_level, LOG_LEVELS),
            log_format=reader.choice("LOG_FORMAT", defaults.log_format, LOG_FORMATS),
            fetch_concurrency=reader.integer(
                "FETCH_CONCURRENCY", defaults.fetch_concurrency, low=1, high=1024
            ),
            fetch_attempts=reader.integer(
                "FETCH_ATTEMPTS", defaults.fetch_attempts, low=1, high=100
            ),
            fetch_backoff_s=reader.number(
                "FETCH_BACKOFF_S", defaults.fetch_backoff_s, low=0.0, high=600.0
            ),
            fetch_timeout_s=reader.number(
                "FETCH_TIMEOUT_S", defaults.fetch_timeout_s, low=0.1, high=86_400.0
            ),
            fetch_retry_delays_s=reader.durations(
                "FETCH_RETRY_DELAYS_S", defaults.fetch_retry_delays_s, low=0.0, high=7 * 86_400.0
            ),
            s3_endpoint_url=reader.text("S3_ENDPOINT_URL", "") or None,
            s3_region=reader.text("S3_REGION", defaults.s3_region),
            s3_bucket=reader.text("S3_BUCKET", defaults.s3_bucket),
            sink=reader.text("SINK", defaults.sink),
            openvidu_key_template=reader.template(
                "OPENVIDU_KEY_TEMPLATE", defaults.openvidu_key_template, KEY_FIELDS
            ),
        )
        insync, factor = settings.topic_min_insync_replicas, settings.topic_replication_factor
        if insync is not None and insync > factor:
            raise SettingsError(
                f"{PREFIX}TOPIC_MIN_INSYNC_REPLICAS={insync} is more than "
                f"{PREFIX}TOPIC_REPLICATION_FACTOR={factor}: no write could ever be acknowledged"
            )
        return settings


def _decode_base64_secret(text: str) -> bytes:
    """Daily hands out its ``hmac`` secret base64-encoded; the HMAC key is the decoded bytes."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not valid base64 (Daily's webhook 'hmac' value is base64)") from exc


STANDARD_WEBHOOKS_SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)


def decode_standard_webhooks_secret(text: str) -> bytes:
    """``whsec_<base64>`` (the prefix is optional) to the HMAC key; ValueError if not."""
    encoded = text.removeprefix(STANDARD_WEBHOOKS_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("is not whsec_ followed by base64") from None
    if not key:
        raise ValueError("is empty")
    return key


@dataclass(frozen=True, slots=True)
class _EnvReader:
    env: Mapping[str, str]

    def _raw(self, name: str) -> str | None:
        value = self.env.get(PREFIX + name)
        return None if value is None or value.strip() == "" else value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def _parsed(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name}={raw!r} is not {what}") from None

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        value = self._parsed(name, default, int, "an integer")
        return _in_range(name, value, low, high)

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        if self._raw(name) is None:
            return None
        return self.integer(name, low, low, high)

    def number(self, name: str, default: float, low: float, high: float | None = None) -> float:
        value = self._parsed(name, default, float, "a number")
        return _in_range(name, value, low, high)

    def durations(
        self, name: str, default: tuple[float, ...], low: float, high: float
    ) -> tuple[float, ...]:
        """Comma-separated seconds, or ``none`` for no durations at all."""
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() == "none":
            return ()
        try:
            values = tuple(float(part) for part in raw.split(","))
        except ValueError:
            raise SettingsError(
                f"{PREFIX}{name}={raw!r} is not comma-separated seconds (or none)"
            ) from None
        for value in values:
            _in_range(name, value, low, high)
        return values

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise SettingsError(f"{PREFIX}{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def template(self, name: str, default: str, fields: tuple[str, ...]) -> str:
        """A ``str.format`` template that may use only ``fields`` as placeholders."""
        value = self.text(name, default)
        try:
            used = {
                field for _, field, _, _ in string.Formatter().parse(value) if field is not None
            }
        except ValueError as exc:
            raise SettingsError(
                f"{PREFIX}{name}={value!r} is not a valid template: {exc}"
            ) from None
        unknown = used - set(fields)
        if unknown or not used:
            raise SettingsError(
                f"{PREFIX}{name}={value!r} must use placeholders from {{{'}, {'.join(fields)}}}"
                + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
            )
        return value

    def secrets(self, name: str, decode: Callable[[str], bytes]) -> tuple[Secret, ...]:
        """Comma-separated ``[key_id:]secret`` entries; ids default to ``k0``, ``k1``..."""
        raw = self._raw(name)
        if raw is None:
            return ()
        secrets = []
        for index, entry in enumerate(part.strip() for part in raw.split(",")):
            key_id, _, secret_text = entry.rpartition(":")
            key_id = key_id or f"k{index}"
            if not secret_text:
                raise SettingsError(f"{PREFIX}{name}: entry {index + 1} is empty")
            try:
                key = decode(secret_text)
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}{name}: secret {key_id!r} {exc}") from None
            secrets.append(Secret(key_id=key_id, key=key))
        return tuple(secrets)


def _in_range(name: str, value: T, low: float, high: float | None) -> T:
    if value < low or (high is not None and value > high):  # type: ignore[operator]
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise SettingsError(f"{PREFIX}{name}={value} is out of range; expected {bounds}")
    return value

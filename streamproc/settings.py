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
    raw_topic: str = "recordings.raw"
    raw_topic_partitions: int = 4
    topic_replication_factor: int = 1
    """Replicas of every topic streamproc creates (3 on a production cluster)."""
    topic_min_insync_replicas: int | None = None
    """``min.insync.replicas`` of the topics it creates (2 with RF 3); None: the broker's."""
    idempotence: str = "auto"
    """The edge's producer: ``on`` idempotent, ``off`` plain, ``auto`` idempotent where the
    broker can (Kafka) and plain where it cannot (the embedded Tansu)."""
    edge_host: str = "127.0.0.1"
    edge_port: int = 8080
    daily_secrets: tuple[Secret, ...] = ()
    openvidu_secrets: tuple[Secret, ...] = ()
    timestamp_tolerance_s: float = 300.0
    max_body_bytes: int = 1024 * 1024
    publish_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    retry_after_s: int = 5
    dedupe_window_s: float = 600.0
    dedupe_max_entries: int = 100_000
    standard_webhooks_mapping: str | None = None
    """A mapping file (``providers/mapping.py``) defining a Standard Webhooks provider; read
    by ``providers.enabled_providers``, which the command line calls at start-up."""
    standard_webhooks_secrets: tuple[Secret, ...] = ()
    # worker
    app_id: str = "streamproc"
    state_topic: str = "recordings.state"
    lifecycle_topic: str = "recordings.lifecycle"
    downloads_topic: str = "recordings.downloads"
    dlq_topic: str = "recordings.dlq"
    fetch_topic: str = "recordings.fetch-requests"
    table_store: str = "memory://"
    data_dir: str = ".streamproc/worker"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    session_timeout_s: float = 30.0
    commit_interval_s: float = 1.0
    processing_guarantee: str = "at_least_once"
    stall_after_s: float = STALL_AFTER_S
    fold_batch: int = 100
    """Events a fold agent takes at a time (1 = one at a time)."""
    fetch_max_wait_ms: int = 1500
    """How long the broker may hold the worker's fetch (Faust's own value by default)."""
    direct_delivery: bool = True
    """Deliver records that need no wait without Faust's per-record race (worker/delivery.py;
    on since 2026-12-02, docs/durability.md section 8)."""
    worker_role: str = "all"
    """``fold`` or ``fetch``: this worker runs only the fold agents or only the downloads
    (their own processes, scaled apart); ``all``: both in one process."""
    log_level: str = "INFO"
    log_format: str = "text"
    # downloads
    fetch_concurrency: int = 8
    fetch_attempts: int = 5
    fetch_backoff_s: float = 0.5
    fetch_timeout_s: float = 60.0
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = "recordings"
    sink: str = ".streamproc/downloads"
    openvidu_key_template: str = "{room}/{filename}"

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
            raw_topic_partitions=reader.integer("RAW_TOPIC_PARTITIONS", 4, low=1, high=10_000),
            topic_replication_factor=reader.integer(
                "TOPIC_REPLICATION_FACTOR", defaults.topic_replication_factor, low=1, high=32
            ),
            topic_min_insync_replicas=reader.optional_integer(
                "TOPIC_MIN_INSYNC_REPLICAS", low=1, high=32
            ),
            idempotence=reader.choice("IDEMPOTENCE", defaults.idempotence, IDEMPOTENCE),
            edge_host=reader.text("EDGE_HOST", defaults.edge_host),
            edge_port=reader.integer("EDGE_PORT", defaults.edge_port, low=0, high=65535),
            daily_secrets=reader.secrets("DAILY_SECRETS", decode=_decode_base64_secret),
            openvidu_secrets=reader.secrets("OPENVIDU_SECRETS", decode=str.encode),
            timestamp_tolerance_s=reader.number("TIMESTAMP_TOLERANCE_S", 300.0, low=1.0),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", defaults.max_body_bytes, low=64),
            publish_timeout_s=reader.number("PUBLISH_TIMEOUT_S", 5.0, low=0.1, high=300.0),
            header_timeout_s=reader.number("HEADER_TIMEOUT_S", 10.0, low=0.1, high=3600.0),
            body_timeout_s=reader.number("BODY_TIMEOUT_S", 30.0, low=0.1, high=3600.0),
            retry_after_s=reader.integer("RETRY_AFTER_S", 5, low=1, high=3600),
            dedupe_window_s=reader.number("DEDUPE_WINDOW_S", 600.0, low=0.0),
            dedupe_max_entries=reader.integer("DEDUPE_MAX_ENTRIES", 100_000, low=0),
            app_id=reader.text("APP_ID", defaults.app_id),
            state_topic=reader.text("STATE_TOPIC", defaults.state_topic),
            lifecycle_topic=reader.text("LIFECYCLE_TOPIC", defaults.lifecycle_topic),
            downloads_topic=reader.text("DOWNLOADS_TOPIC", defaults.downloads_topic),
            dlq_topic=reader.text("DLQ_TOPIC", defaults.dlq_topic),
            fetch_topic=reader.text("FETCH_TOPIC", defaults.fetch_topic),
            table_store=reader.choice("TABLE_STORE", defaults.table_store, TABLE_STORES),
            data_dir=reader.text("DATA_DIR", defaults.data_dir),
            worker_web_host=reader.text("WORKER_WEB_HOST", defaults.worker_web_host),
            worker_web_port=reader.integer("WORKER_WEB_PORT", 6066, low=0, high=65535),
            session_timeout_s=reader.number("SESSION_TIMEOUT_S", 30.0, low=1.0, high=3600.0),
            commit_interval_s=reader.number("COMMIT_INTERVAL_S", 1.0, low=0.05, high=600.0),
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
            fetch_concurrency=reader.integer("FETCH_CONCURRENCY", 8, low=1, high=1024),
            fetch_attempts=reader.integer("FETCH_ATTEMPTS", 5, low=1, high=100),
            fetch_backoff_s=reader.number("FETCH_BACKOFF_S", 0.5, low=0.0, high=600.0),
            fetch_timeout_s=reader.number("FETCH_TIMEOUT_S", 60.0, low=0.1, high=86_400.0),
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

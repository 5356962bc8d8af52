"""Download throughput and memory: the worker's fetcher (``streamproc.fetch.Fetcher``:
retries, size and sha256 checks, partial file then rename, completion marker) vs a bare
aiobotocore streaming download into a file, from the same S3 API server (moto) in this run.

Two loads: many recordings of a few MB (``--count`` x ``--size-mb``, ``fetch_concurrency`` at
a time, as the worker does) and one large object (``--large-mb``), whose peak RSS is what a
worker needs to fetch it. Each measurement runs in its own process so its peak RSS is its
own. Usage:

    .venv/bin/python bench/downloads_throughput.py [--count 200 --size-mb 5 --large-mb 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import Figure, table

from streamproc.local.s3 import LOCAL_CREDENTIALS, EmbeddedS3
from streamproc.settings import Settings

BUCKET = "bench-recordings"
MIB = 1024 * 1024


def upload(s3: EmbeddedS3, count: int, size_mb: int, large_mb: int, scratch: Path) -> None:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    small = os.urandom(size_mb * MIB)
    for index in range(count):
        client.put_object(Bucket=BUCKET, Key=f"small/{index:04d}.mp4", Body=small)
    large = scratch / "large.mp4"
    with large.open("wb") as handle:
        for _ in range(large_mb):
            handle.write(os.urandom(MIB))
    client.upload_file(str(large), BUCKET, "large/0000.mp4")
    large.unlink()


async def bare(keys: list[str], destination: Path, concurrency: int) -> None:
    """aiobotocore get_object, 1 MiB reads written to a file: no checks, no retries."""
    from aiobotocore.session import get_session

    session = get_session()
    async with session.create_client("s3", endpoint_url=os.environ["BENCH_S3"]) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(key: str) -> None:
            async with gate:
                await bare_download(client, BUCKET, key, destination)

        await asyncio.gather(*(one(key) for key in keys))


async def bare_download(client: Any, bucket: str, key: str, destination: Path) -> None:
    """One object with aiobotocore's get_object, 1 MiB reads written to a file."""
    response = await client.get_object(Bucket=bucket, Key=key)
    path = destination / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        async with response["Body"] as body:
            while chunk := await body.read(MIB):
                await asyncio.to_thread(handle.write, chunk)


async def fetcher(keys: list[str], destination: Path, concurrency: int) -> None:
    """The worker's Fetcher, one fetch request per object, as the downloads agent sends."""
    from streamproc.fetch.fetcher import Fetcher

    settings = Settings.from_env()
    gate = asyncio.Semaphore(concurrency)
    async with Fetcher(settings) as fetch:

        async def one(index: int, key: str) -> None:
            async with gate:
                request = {"provider": "daily", "recording_id": f"rec-{index}", "s3_key": key}
                await fetch.fetch(request)

        await asyncio.gather(*(one(index, key) for index, key in enumerate(keys)))


class RssSampler(threading.Thread):
    """The highest resident set size seen while the download runs (every 10 ms): the
    process's lifetime peak (ru_maxrss) is set by imports, not by the download."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        statm = Path(f"/proc/{os.getpid()}/statm")
        while self.running:
            self.peak = max(self.peak, int(statm.read_text().split()[1]) * page)
            time.sleep(0.01)


def child(mode: str, keys: list[str], destination: Path, concurrency: int) -> None:
    sampler = RssSampler()
    sampler.start()
    started = time.monotonic()
    run = bare if mode == "bare" else fetcher
    asyncio.run(run(keys, destination, concurrency))
    seconds = time.monotonic() - started
    sampler.running = False
    sampler.join()
    print(json.dumps({"seconds": seconds, "peak_mib": sampler.peak / MIB}))


def measure(mode: str, keys: list[str], s3_url: str, scratch: Path, concurrency: int) -> dict:
    destination = Path(tempfile.mkdtemp(dir=scratch))
    env = {
        **os.environ,
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "BENCH_S3": s3_url,
        "STREAMPROC_S3_ENDPOINT_URL": s3_url,
        "STREAMPROC_S3_BUCKET": BUCKET,
        "STREAMPROC_SINK": str(destination),
    }
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--concurrency", str(concurrency), *keys],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    subprocess.run(["rm", "-rf", str(destination)], check=True)
    return json.loads(output.strip().splitlines()[-1])


def run(count: int = 200, size_mb: int = 5, large_mb: int = 1024) -> list[Figure]:
    concurrency = Settings().fetch_concurrency
    figures = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        s3 = EmbeddedS3().start()
        try:
            upload(s3, count, size_mb, large_mb, scratch)
            loads = [
                (f"{count} x {size_mb} MB", [f"small/{i:04d}.mp4" for i in range(count)],
                 count * size_mb),
                (f"1 x {large_mb} MB", ["large/0000.mp4"], large_mb),
            ]  # fmt: skip
            for label, keys, megabytes in loads:
                base = measure("bare", keys, s3.url, scratch, concurrency)
                ours = measure("fetcher", keys, s3.url, scratch, concurrency)
                figures.append(
                    Figure(
                        f"downloads, {label} (fetcher: checks, partial file, marker)",
                        megabytes / ours["seconds"],
                        "MB/s",
                        "bare aiobotocore streaming download",
                        megabytes / base["seconds"],
                        ">= 0.8",
                    )
                )
            figures.append(
                Figure(
                    f"downloads, peak RSS of the process fetching 1 x {large_mb} MB",
                    ours["peak_mib"],
                    "MiB",
                    "bare download's peak RSS",
                    base["peak_mib"],
                    "<= 150 MB",
                )
            )
        finally:
            s3.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size-mb", type=int, default=5)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--child", choices=["bare", "fetcher"], help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("keys", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.keys, Path(os.environ["STREAMPROC_SINK"]), args.concurrency)
    else:
        print(table(run(args.count, args.size_mb, args.large_mb)))


if __name__ == "__main__":
    main()

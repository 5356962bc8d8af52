"""Where a download's CPU goes: the worker's fetcher (``streamproc.fetch.Fetcher``) against a
bare aiobotocore download of the same small objects from the same S3 API server (moto), one
at a time, in this process; then the fetcher again under cProfile, its time by package.

At the rate where the whole stack falls behind, the fetch worker's CPU per download is what
runs out first (bench/README.md, "What stands between"); this says which layer spends it.
The first figures are unprofiled (process CPU per download, the hashing and disk threads
included); cProfile's shares come from the main thread's CPU clock and its own cost inflates
every call alike, so read them as shares. Usage:

    .venv/bin/python bench/fetch_profile.py [--count 400] [--size-kb 4] [--checksums] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from downloads_throughput import bare_download
from worker_profile import print_profile

from streamproc.fetch.fetcher import Fetcher
from streamproc.local.s3 import LOCAL_CREDENTIALS, EmbeddedS3
from streamproc.settings import Settings

BUCKET = "bench-fetches"


def upload(s3: EmbeddedS3, count: int, size_kb: int, checksums: bool) -> list[str]:
    """``count`` objects; with ``checksums`` S3 keeps each one's sha256, and botocore then
    verifies it on every read too."""
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    body = os.urandom(size_kb * 1024)
    extra = {"ChecksumAlgorithm": "SHA256"} if checksums else {}
    keys = [f"small/{index:05d}.mp4" for index in range(count)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=body, **extra)
    return keys


ROUNDS = 8
"""The two downloads take turns in this many rounds, so a busy spell on the shared machine
falls on both alike."""


async def cpu_per_download(
    settings: Settings, keys: list[str], scratch: Path
) -> tuple[float, float]:
    """Process CPU seconds per download: bare aiobotocore (get_object, the body written to a
    file: no checks, no marker, no fsync) and the Fetcher, each object once by each, the
    first of each left out (connection, imports)."""
    from aiobotocore.session import get_session

    destination = scratch / "bare"
    async with (
        get_session().create_client(
            "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region
        ) as client,
        Fetcher(dataclasses.replace(settings, sink=str(scratch / "timed"))) as fetcher,
    ):

        async def bare(key: str) -> None:
            await bare_download(client, BUCKET, key, destination)

        requests = requests_for(keys, "timed")
        await bare(keys[0])
        await fetcher.fetch(requests[0])
        spent = {"bare": 0.0, "fetcher": 0.0}
        step = max(1, (len(keys) - 1) // ROUNDS)
        for first in range(1, len(keys), step):
            for name in spent:
                started = time.process_time()
                for index in range(first, min(first + step, len(keys))):
                    await (bare(keys[index]) if name == "bare" else fetcher.fetch(requests[index]))
                spent[name] += time.process_time() - started
        return spent["bare"] / (len(keys) - 1), spent["fetcher"] / (len(keys) - 1)


def requests_for(keys: list[str], run: str) -> list[dict[str, str]]:
    return [
        {"provider": "daily", "recording_id": f"{run}-{index}", "s3_key": key}
        for index, key in enumerate(keys)
    ]


async def fetcher_profiled(settings: Settings, keys: list[str], output: Path) -> None:
    async with Fetcher(settings) as fetcher:
        requests = requests_for(keys, "profiled")
        await fetcher.fetch(requests[0])
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        for request in requests[1:]:
            await fetcher.fetch(request)
        profiler.disable()
        profiler.dump_stats(str(output))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400, help="downloads per measurement")
    parser.add_argument("--size-kb", type=int, default=4, help="each object's size")
    parser.add_argument("--checksums", action="store_true", help="objects stored with sha256")
    parser.add_argument("--top", type=int, default=25, help="functions by own time to list")
    args = parser.parse_args()
    os.environ.update(LOCAL_CREDENTIALS)
    with tempfile.TemporaryDirectory() as scratch:
        s3 = EmbeddedS3(log_path=Path(scratch, "moto.log")).start()
        try:
            keys = upload(s3, args.count, args.size_kb, args.checksums)
            settings = dataclasses.replace(
                Settings.from_env(),
                s3_endpoint_url=s3.url,
                s3_bucket=BUCKET,
                sink=str(Path(scratch, "sink")),
            )
            bare, ours = asyncio.run(cpu_per_download(settings, keys, Path(scratch)))
            output = Path(scratch, "fetch.prof")
            asyncio.run(
                fetcher_profiled(dataclasses.replace(settings, sink=f"{scratch}/p"), keys, output)
            )
        finally:
            s3.stop()
        stored = "with sha256 checksums" if args.checksums else "without checksums"
        print(f"{args.count} objects of {args.size_kb} KiB from moto, {stored}, one at a time:")
        print("| download | CPU per download | vs bare |\n| --- | --- | --- |")
        print(f"| bare aiobotocore get_object to a file | {bare * 1e3:.2f} ms | 1.00 |")
        print(f"| streamproc's Fetcher | {ours * 1e3:.2f} ms | {ours / bare:.2f} |")
        print("\nThe Fetcher under cProfile (main thread), own time by package:")
        print_profile(output, args.top)


if __name__ == "__main__":
    main()

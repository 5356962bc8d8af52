"""The fetcher against moto's S3 server over HTTP, with faults injected by a real proxy."""

from __future__ import annotations

import dataclasses
import hashlib
import tracemalloc
import uuid

import pytest

from streamproc.fetch.errors import PermanentFetchError, TransientFetchError
from streamproc.fetch.fetcher import Fetcher
from streamproc.settings import Settings

from helpers import s3_client

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    name = f"fetch-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def settings_for(proxy, bucket: str, sink: str, **changes) -> Settings:
    base = Settings(
        s3_endpoint_url=proxy.url,
        s3_bucket=bucket,
        sink=sink,
        fetch_attempts=4,
        fetch_backoff_s=0.01,
        fetch_timeout_s=10,
    )
    return dataclasses.replace(base, **changes)


def request(key: str, recording: str = "rec-1", **extra) -> dict:
    return {
        "provider": "daily",
        "recording_id": recording,
        "room": "room",
        "s3_key": key,
        "tracks": None,
        "filename": None,
        **extra,
    }


def put(proxy, bucket: str, key: str, data: bytes) -> None:
    s3_client(proxy.upstream).put_object(
        Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256"
    )


async def test_5xx_and_cut_bodies_are_retried_until_the_copy_verifies(s3_proxy, bucket, tmp_path):
    data = b"0123456789" * 50_000
    put(s3_proxy, bucket, "flaky.mp4", data)
    path = f"/{bucket}/flaky.mp4"
    s3_proxy.fail_next[path] = 1
    s3_proxy.cut_next[path] = 1
    async with Fetcher(settings_for(s3_proxy, bucket, str(tmp_path))) as fetcher:
        [item] = await fetcher.fetch(request("flaky.mp4"))
    assert s3_proxy.gets[path] == 3
    assert (tmp_path / "daily" / "rec-1" / "flaky.mp4").read_bytes() == data
    assert item.sha256 == hashlib.sha256(data).hexdigest() and item.size == len(data)
    assert not list(tmp_path.rglob("*.part-*")), "a partial copy was left behind"


async def test_a_body_with_other_bytes_of_the_same_length_is_fetched_again(
    s3_proxy, bucket, tmp_path
):
    data = b"0123456789" * 50_000
    put(s3_proxy, bucket, "bitrot.mp4", data)
    path = f"/{bucket}/bitrot.mp4"
    s3_proxy.corrupt_next[path] = 1
    async with Fetcher(settings_for(s3_proxy, bucket, str(tmp_path))) as fetcher:
        [item] = await fetcher.fetch(request("bitrot.mp4"))
    assert s3_proxy.gets[path] == 2
    assert (tmp_path / "daily" / "rec-1" / "bitrot.mp4").read_bytes() == data
    assert item.sha256 == hashlib.sha256(data).hexdigest()


async def test_missing_object_fails_at_once_without_retrying(s3_proxy, bucket, tmp_path):
    async with Fetcher(settings_for(s3_proxy, bucket, str(tmp_path))) as fetcher:
        with pytest.raises(PermanentFetchError, match="404"):
            await fetcher.fetch(request("nowhere.mp4"))
    assert s3_proxy.gets[f"/{bucket}/nowhere.mp4"] == 1


async def test_exhausted_retries_raise_a_transient_error(s3_proxy, bucket, tmp_path):
    put(s3_proxy, bucket, "down.mp4", b"x")
    s3_proxy.fail_next[f"/{bucket}/down.mp4"] = 10
    async with Fetcher(settings_for(s3_proxy, bucket, str(tmp_path))) as fetcher:
        with pytest.raises(TransientFetchError, match="503"):
            await fetcher.fetch(request("down.mp4"))
    assert s3_proxy.gets[f"/{bucket}/down.mp4"] == 4


async def test_a_stored_copy_is_not_fetched_again_unless_asked(s3_proxy, bucket, tmp_path):
    put(s3_proxy, bucket, "once.mp4", b"once")
    path = f"/{bucket}/once.mp4"
    async with Fetcher(settings_for(s3_proxy, bucket, str(tmp_path))) as fetcher:
        first = await fetcher.fetch(request("once.mp4"))
        again = await fetcher.fetch(request("once.mp4"))
        assert s3_proxy.gets[path] == 1
        assert again == first
        await fetcher.fetch(request("once.mp4"), refetch=True)
        assert s3_proxy.gets[path] == 2


async def test_unsafe_keys_are_refused_before_any_request(s3_proxy, bucket, tmp_path):
    async with Fetcher(settings_for(s3_proxy, bucket, str(tmp_path / "sink"))) as fetcher:
        with pytest.raises(PermanentFetchError, match=r"'\.\.'"):
            await fetcher.fetch(request("../../outside.mp4"))
    assert sum(s3_proxy.gets.values()) == 0
    assert not (tmp_path / "outside.mp4").exists()


async def test_copies_into_a_destination_bucket_with_multipart_uploads(s3_proxy, bucket, tmp_path):
    data = bytes(range(256)) * 40_000  # 10 MiB: two parts
    put(s3_proxy, bucket, "big.mp4", data)
    destination = f"{bucket}-copies"
    s3 = s3_client(s3_proxy.upstream)
    s3.create_bucket(Bucket=destination)
    settings = settings_for(s3_proxy, bucket, f"s3://{destination}/archive")
    async with Fetcher(settings) as fetcher:
        [item] = await fetcher.fetch(request("big.mp4"))
        assert item.destination == f"s3://{destination}/archive/daily/rec-1/big.mp4"
        await fetcher.fetch(request("big.mp4"))
    copied = s3.get_object(Bucket=destination, Key="archive/daily/rec-1/big.mp4")["Body"].read()
    assert copied == data
    assert s3_proxy.gets[f"/{bucket}/big.mp4"] == 1


async def test_memory_does_not_grow_with_the_object(s3_proxy, bucket, tmp_path):
    data = b"m" * (48 * 1024 * 1024)
    put(s3_proxy, bucket, "large.mp4", data)
    # Straight to moto: the proxy (in this process) buffers whole bodies itself.
    settings = settings_for(s3_proxy, bucket, str(tmp_path), s3_endpoint_url=s3_proxy.upstream)
    async with Fetcher(settings) as fetcher:
        tracemalloc.start()
        try:
            [item] = await fetcher.fetch(request("large.mp4"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert item.size == len(data)
    assert peak < 12 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a 48 MiB object"

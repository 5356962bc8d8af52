"""Reads one S3 object as a stream, verifying its size and sha256, retrying what may pass.

Retries (exponential backoff with full jitter, via tenacity) cover 5xx, throttling,
timeouts, connection resets and a body that came up short or corrupt; 403/404 and other
client errors fail at once. Each attempt restarts the object from its first byte.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from streamproc.fetch.errors import FetchError, PermanentFetchError, TransientFetchError
from streamproc.fetch.sinks import SinkWriter

CHUNK_SIZE = 1024 * 1024
TRANSIENT_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)


@dataclass(frozen=True, slots=True)
class Copied:
    size: int
    sha256: str


def classify(error: BaseException, key: str) -> FetchError:
    """Map a client or network failure to a transient or permanent fetch error."""
    if isinstance(error, FetchError):
        return error
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "")
        message = f"S3 answered {status} {code} for {key!r}"
        if status >= 500 or code in TRANSIENT_CODES:
            return TransientFetchError(message)
        return PermanentFetchError(message)
    return TransientFetchError(f"reading {key!r} failed: {error!r}")


TRANSIENT_ERRORS = (
    BotoConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
    BotoCoreError,
)


class S3Source:
    def __init__(
        self, client: Any, bucket: str, attempts: int, backoff_s: float, timeout_s: float
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    async def copy(self, key: str, open_writer: Any, expected_size: int | None = None) -> Copied:
        """Stream ``key`` into a writer from ``open_writer()``, retrying transient failures."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.backoff_s, max=30),
            retry=retry_if_exception(lambda exc: not getattr(exc, "permanent", True)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    async with open_writer() as writer:
                        return await self._copy_once(key, writer, expected_size)
                except FetchError:
                    raise
                except (ClientError, *TRANSIENT_ERRORS) as exc:
                    raise classify(exc, key) from exc
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _copy_once(self, key: str, writer: SinkWriter, expected_size: int | None) -> Copied:
        """One attempt; ``timeout_s`` bounds each wait for S3, not the whole (large) object."""
        async with asyncio.timeout(self.timeout_s):
            response = await self.client.get_object(
                Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
            )
        declared = int(response["ContentLength"])
        size = 0
        async with response["Body"] as body:
            while True:
                async with asyncio.timeout(self.timeout_s):
                    chunk = await body.read(CHUNK_SIZE)
                if not chunk:
                    break
                size += len(chunk)
                await writer.write(chunk)
        if size != declared:
            raise TransientFetchError(f"{key!r}: got {size} bytes, S3 declared {declared}")
        if expected_size is not None and size != expected_size:
            raise PermanentFetchError(
                f"{key!r}: S3 has {size} bytes, the provider announced {expected_size}"
            )
        digest = writer.digest
        checksum = response.get("ChecksumSHA256")
        if checksum and "-" not in checksum and base64.b64decode(checksum) != digest.digest():
            raise TransientFetchError(f"{key!r}: sha256 does not match S3's checksum")
        return Copied(size=size, sha256=digest.hexdigest())

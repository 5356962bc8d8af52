"""Fetch every object of one finished recording into the sink, once.

Steps for each object, in this order so a crash between any two loses nothing and repeats
no download: (1) skip it if the sink already holds a complete, verified copy; (2) stream it
from S3 into a temporary copy, verifying size and sha256; (3) put the copy in place;
(4) write the completion marker. A crash before (4) downloads again; after it, never.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from streamproc.core.derived import DownloadedObject
from streamproc.fetch.plan import destination, object_keys
from streamproc.fetch.sinks import Sink, Stored, sink_from_url
from streamproc.fetch.source import S3Source
from streamproc.settings import Settings


class Fetcher:
    """An S3 client (source, and destination for an S3 sink) with the worker's lifetime."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self.source: S3Source
        self.sink: Sink

    async def __aenter__(self) -> Fetcher:
        settings = self.settings
        client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                config=AioConfig(
                    # one attempt per call: our own retry loop restarts whole objects
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=settings.fetch_timeout_s,
                    read_timeout=settings.fetch_timeout_s,
                ),
            )
        )
        self.source = S3Source(
            client,
            settings.s3_bucket,
            attempts=settings.fetch_attempts,
            backoff_s=settings.fetch_backoff_s,
            timeout_s=settings.fetch_timeout_s,
        )
        self.sink = sink_from_url(settings.sink, client)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def fetch(
        self, request: Mapping[str, Any], refetch: bool = False
    ) -> list[DownloadedObject]:
        """Download each object of ``request`` (a fetch-request message); raise FetchError."""
        provider, recording_id = request["provider"], request["recording_id"]
        sizes = {t["s3_key"]: t.get("size") for t in request.get("tracks") or ()}
        downloaded = []
        for key in object_keys(request, self.settings.openvidu_key_template):
            relative = destination(provider, recording_id, key)
            stored = None if refetch else await self.sink.existing(relative)
            if stored is None:
                copied = await self.source.copy(
                    key, lambda relative=relative: self.sink.open(relative), sizes.get(key)
                )
                stored = Stored(size=copied.size, sha256=copied.sha256)
                await self.sink.mark_complete(relative, stored)
            downloaded.append(
                DownloadedObject(
                    source_bucket=self.settings.s3_bucket,
                    source_key=key,
                    destination=self.sink.describe(relative),
                    size=stored.size,
                    sha256=stored.sha256,
                )
            )
        return downloaded

"""The worker's side of the derivation (``derivation/step.py``): Faust tables and Kafka
topics in, and the download of finished recordings.

Faust flushes the derivation's sends, then commits the record's offset; a crash before the
commit redelivers the record, which the derivation handles again without loss or harm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust.exceptions import FaustError

from streamproc.core import derived
from streamproc.core.derived import ATTEMPT_HEADER, attempt_of
from streamproc.core.fold import SourcePosition
from streamproc.derivation.sender import Sender
from streamproc.derivation.step import SOURCE_HEADERS, Derivation, source_headers
from streamproc.fetch.errors import FetchError
from streamproc.fetch.fetcher import Fetcher
from streamproc.fetch.retries import REASONS_HEADER, earlier_reasons
from streamproc.providers.decode import header_dict

log = logging.getLogger(__name__)
NOT_THE_RECORDS_FAULT = (KafkaError, FaustError)
"""Errors of Kafka or the engine, not of the record being handled: they are raised, not
dead-lettered; the agent's crash ends the worker and the next one reads the record again
(``worker/engine.py`` correction 8; a table's ``PartitionsMismatch`` once dead-lettered
good events, docs/notes/durability.md section 10)."""


class Pipeline(Derivation):
    def __init__(
        self,
        *,
        downloads: Sender,
        fetch_retries: Sequence[Sender] = (),
        **derivation: Any,
    ) -> None:
        """``derivation``: the ``Derivation``'s arguments (tables, senders, partitions,
        providers); Kafka's and Faust's errors are raised, never dead-lettered.
        ``fetch_retries``: the retry topics, one per wait (``fetch/retries.py``)."""
        super().__init__(infrastructure_errors=NOT_THE_RECORDS_FAULT, **derivation)
        self.downloads = downloads
        self.fetch_retries = list(fetch_retries)

    async def handle_fetch_request(
        self,
        fetcher: Fetcher,
        source: SourcePosition,
        key: bytes | None,
        value: bytes | None,
        now: float,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        """Download a finished recording's files; publish one message per file, or dead-letter
        (with the request's ``headers``, which say its attempt)."""
        headers = headers or {}
        try:
            request = orjson.loads(value or b"")
            recording_id = request["recording_id"]
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            await self.dead_letter(
                "fetch", f"unreadable fetch request: {exc!r}", source, key, value, headers
            )
            return
        try:
            downloaded = await fetcher.fetch(request, refetch=bool(request.get("refetch")))
        except FetchError as exc:
            await self._fetch_failed(exc, source, key, value, headers, recording_id)
            return
        except NOT_THE_RECORDS_FAULT:
            raise
        except Exception as exc:
            log.exception("fetch failed for %s", recording_id)
            await self.dead_letter("fetch", repr(exc), source, key, value, headers, recording_id)
            return
        for item in downloaded:
            self.counts["downloaded"] += 1
            message = derived.download_message(request["provider"], recording_id, item, now)
            await self.downloads.send(key=recording_id.encode(), value=derived.encode(message))

    async def _fetch_failed(
        self,
        error: FetchError,
        source: SourcePosition,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        recording_id: str,
    ) -> None:
        """To the retry topic of this attempt if it may heal and one is left, else to the
        dead-letter topic with the reason of every attempt."""
        attempt = attempt_of(headers)
        reasons = [*earlier_reasons(headers), f"attempt {attempt}: {error}"]
        if error.may_heal and attempt <= len(self.fetch_retries):
            self.counts["fetch.retried"] += 1
            log.info(
                "fetch of %s failed (attempt %d), trying again later: %s",
                recording_id,
                attempt,
                error,
            )
            waiting = {
                **headers,
                ATTEMPT_HEADER: b"%d" % (attempt + 1),
                REASONS_HEADER: orjson.dumps(reasons),
            }
            await self.fetch_retries[attempt - 1].send(
                key=key or recording_id.encode(), value=value or b"", headers=list(waiting.items())
            )
            return
        reason = (
            str(error)
            if len(reasons) == 1
            else f"{error} (after {len(reasons)} attempts: {' | '.join(reasons)})"
        )
        await self.dead_letter("fetch", reason, source, key, value, headers, recording_id)


def forwarding_headers(record: Any) -> dict[str, bytes]:
    """Where a record came from, unless it already says (a forwarded record keeps its origin)."""
    headers = header_dict(record.headers)
    if all(name in headers for name in SOURCE_HEADERS):
        return {}
    return source_headers(SourcePosition(record.topic, record.partition, record.offset))

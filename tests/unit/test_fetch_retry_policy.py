"""A failed download that may heal waits in the retry topic of its attempt; after the last
wait, or when it cannot heal, it is dead-lettered with every attempt's reason."""

from __future__ import annotations

import asyncio

import orjson

from streamproc.core.fold import SourcePosition
from streamproc.fetch.errors import FetchError, PermanentFetchError, UnsafeDestination
from streamproc.fetch.retries import REASONS_HEADER
from streamproc.providers import PROVIDERS
from streamproc.worker.pipeline import Pipeline

REQUEST = orjson.dumps({"recording_id": "rec-1", "provider": "daily", "s3_key": "a.mp4"})
SOURCE = SourcePosition("recordings.fetch", 0, 4)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, dict[str, bytes]]] = []

    async def send(self, *, key: bytes, value: bytes, headers=None, partition=None) -> None:
        self.sent.append((key, value, dict(headers or [])))


class Failing:
    def __init__(self, error: FetchError) -> None:
        self.error = error

    async def fetch(self, request, refetch: bool = False):
        raise self.error


def fetch_once(error: FetchError, headers: dict[str, bytes] | None = None):
    retries, dead, other = [Recorder(), Recorder()], Recorder(), Recorder()
    pipeline = Pipeline(
        table={},
        instance_table={},
        partitions=1,
        providers=PROVIDERS,
        state=other,
        lifecycle=other,
        fetch_requests=other,
        downloads=other,
        rekeyed=other,
        instances=other,
        dead_letters=dead,
        fetch_retries=retries,
    )
    asyncio.run(
        pipeline.handle_fetch_request(
            Failing(error), SOURCE, b"rec-1", REQUEST, now=0.0, headers=headers
        )
    )
    return retries, [orjson.loads(value) for _, value, _ in dead.sent]


def test_a_failure_that_may_heal_waits_in_the_retry_topic_of_its_attempt():
    retries, dead = fetch_once(PermanentFetchError("'a.mp4': 404 Not Found"))
    assert dead == [] and retries[1].sent == []
    [(key, value, headers)] = retries[0].sent
    assert (key, value, headers["streamproc-attempt"]) == (b"rec-1", REQUEST, b"2")
    assert orjson.loads(headers[REASONS_HEADER]) == ["attempt 1: 'a.mp4': 404 Not Found"]

    retries, dead = fetch_once(FetchError("503"), dict(retries[0].sent[0][2]))
    [(_, _, headers)] = retries[1].sent
    assert headers["streamproc-attempt"] == b"3" and dead == []


def test_after_the_last_wait_it_is_dead_lettered_with_every_reason():
    earlier = orjson.dumps(["attempt 1: 404", "attempt 2: 503"])
    headers = {"streamproc-attempt": b"3", REASONS_HEADER: earlier}
    retries, [dead] = fetch_once(FetchError("timeout"), headers)
    assert all(retry.sent == [] for retry in retries)
    assert dead["attempt"] == 3
    assert (
        dead["reason"]
        == "timeout (after 3 attempts: attempt 1: 404 | attempt 2: 503 | attempt 3: timeout)"
    )


def test_a_failure_that_cannot_heal_is_dead_lettered_at_once():
    retries, [dead] = fetch_once(UnsafeDestination("'../x' leaves the sink"))
    assert all(retry.sent == [] for retry in retries)
    assert (dead["reason"], dead["attempt"]) == ("'../x' leaves the sink", 1)

"""A Faust table written once per key per batch of events, not once per event.

The fold agents take events in batches (``stream.take_events``); a recording with several
events in a batch, and the partition's stall clock, would otherwise write the table (and its
changelog) once per event. Here writes wait in ``pending`` until ``flush`` (the agent calls
it at the end of every batch, before Faust acks the batch's events), and reads see them.

Faust routes a table write to the partition of the event being handled (its changelog
partition, and a rocksdb store's partition database), so each pending write keeps the event
it was made under and is flushed as that event: a key's events all come from one partition.

Faust hands a changelog message to its producer's buffer, which sends it later, from its own
task. With exactly-once that can be after the commit of the records that wrote it: a
transaction holds the commit's lock on its producer, the buffered send waits for it and goes
into the next transaction, and a worker that dies before that one commits has committed the
records without their table writes. ``track_changelog`` keeps each changelog message's future
so that the agent waits, before it lets a commit in, until they are all sent.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event, current_event

_DELETED = object()


@contextmanager
def handling(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event (what a table write is attributed to)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class BatchTable(MutableMapping[bytes, bytes]):
    def __init__(self, table: MutableMapping[bytes, bytes], track_changelog: bool = False) -> None:
        self.table = table
        self.pending: dict[bytes, tuple[Any, Any]] = {}
        """Key -> (value or ``_DELETED``, the event the write was made under)."""
        self.changelog_sends: list[asyncio.Future[Any]] = []
        """Changelog messages of flushed writes not waited for yet (``track_changelog``)."""
        if track_changelog:
            self._track_changelog()

    def _track_changelog(self) -> None:
        send = self.table.send_changelog  # type: ignore[attr-defined]

        def send_changelog(*args: Any, **kwargs: Any) -> Any:
            future = send(*args, **kwargs)
            self.changelog_sends.append(future)
            return future

        self.table.send_changelog = send_changelog  # type: ignore[attr-defined]

    async def changelog_sent(self, sender_crashed: asyncio.Event | None = None) -> None:
        """Until the changelog messages of every write flushed so far are sent; raises if
        ``sender_crashed`` is set first (a crashed buffer would never send them)."""
        sends, self.changelog_sends = self.changelog_sends, []
        if not sends:
            return
        all_sent = asyncio.gather(*sends)
        if sender_crashed is None:
            await all_sent
            return
        crashed = asyncio.ensure_future(sender_crashed.wait())
        done, _ = await asyncio.wait({all_sent, crashed}, return_when=asyncio.FIRST_COMPLETED)
        crashed.cancel()
        if all_sent not in done:
            all_sent.cancel()
            all_sent.add_done_callback(_read_outcome)  # or asyncio logs it as never retrieved
            raise RuntimeError("the producer buffer that sends the changelog crashed")
        all_sent.result()

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.pending:
            value, _ = self.pending[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        value = self.table[key]
        if value is None:  # a Faust table with default=None answers missing keys with None
            raise KeyError(key)
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.pending[key] = (value, self._event())

    def __delitem__(self, key: bytes) -> None:
        self.pending[key] = (_DELETED, self._event())

    def _event(self) -> Any:
        event = current_event()
        if event is None:
            raise RuntimeError("a table write outside of an event being handled")
        return event

    def __iter__(self) -> Iterator[bytes]:
        self.flush()
        return iter(list(self.table.keys()))

    def __len__(self) -> int:
        self.flush()
        return len(self.table)

    def items(self) -> Any:
        self.flush()
        return self.table.items()

    def flush(self) -> None:
        """Write every pending key to the table, as the event it was written under."""
        pending, self.pending = self.pending, {}
        for key, (value, event) in pending.items():
            with handling(event):
                if value is _DELETED:
                    self.table.pop(key, None)
                else:
                    self.table[key] = value


def _read_outcome(future: asyncio.Future[Any]) -> None:
    """Marks an abandoned future's exception as seen (its outcome no longer matters)."""
    if not future.cancelled():
        future.exception()

"""The recording states of one replay: on disk, with the recently used ones in memory.

A replay folds every partition from offset 0, so it meets every recording the log ever
named, and a dict of states grows with the log: about 2 KiB of Python objects a recording,
788 MiB of peak RSS for 1M raw events (235 MiB with this store; bench/README.md). Here the
states live in a RocksDB store (rocksdict, as the worker's ``rocksdb://`` tables keep
theirs) in a temporary directory removed on ``close``, encoded as the worker's table encodes
them, and only the ``cached`` most recently used stay as objects. A recording's events sit
close together in the log, so nearly every fold finds its state in memory and writes it back
only when it falls out of the cache.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping

from rocksdict import Options, Rdict

from streamproc.core.fold import RecordingState

CACHED = 10_000
"""States kept as objects: about 20 MiB, and enough that a fold seldom reads the disk."""
WRITE_BUFFER_BYTES = 16 << 20
"""RocksDB's memtable before it flushes to disk (its default, 64 MiB, is a fifth of issue
10's 300 MB)."""


class ReplayStates(MutableMapping[str, RecordingState]):
    """Recording id -> state, bounded in memory whatever the length of the log."""

    def __init__(self, cached: int = CACHED) -> None:
        self.cached = cached
        self._recent: OrderedDict[str, RecordingState] = OrderedDict()
        directory = tempfile.mkdtemp(prefix="streamproc-replay-")
        options = Options(raw_mode=True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        self._db = Rdict(directory, options)
        self._count = 0
        self._remove = weakref.finalize(self, _remove_store, self._db, directory)
        """Also run when the store is dropped unclosed (a caller of ``replay`` that only
        reads the result), so no directory is left behind."""

    def __getitem__(self, recording_id: str) -> RecordingState:
        state = self._recent.get(recording_id)
        if state is not None:
            self._recent.move_to_end(recording_id)
            return state
        stored = self._db.get(recording_id.encode())
        if stored is None:
            raise KeyError(recording_id)
        return RecordingState.from_json(stored)

    def __setitem__(self, recording_id: str, state: RecordingState) -> None:
        if recording_id not in self._recent and recording_id.encode() not in self._db:
            self._count += 1
        self._recent[recording_id] = state
        self._recent.move_to_end(recording_id)
        if len(self._recent) > self.cached:
            oldest, evicted = self._recent.popitem(last=False)
            self._db[oldest.encode()] = evicted.to_json()

    def __delitem__(self, recording_id: str) -> None:
        in_memory = self._recent.pop(recording_id, None) is not None
        key = recording_id.encode()
        on_disk = key in self._db
        if not (in_memory or on_disk):
            raise KeyError(recording_id)
        if on_disk:
            del self._db[key]
        self._count -= 1

    def __iter__(self) -> Iterator[str]:
        """Recording ids in sorted order (RocksDB's key order)."""
        self._flush()
        for key in self._db.keys():  # noqa: SIM118 (a raw-mode Rdict is not iterable)
            yield key.decode()

    def __len__(self) -> int:
        return self._count

    def _flush(self) -> None:
        """Write the cached states through, so the store alone holds every state."""
        for recording_id, state in self._recent.items():
            self._db[recording_id.encode()] = state.to_json()

    def close(self) -> None:
        """Close the store and remove its directory (the states are gone after this)."""
        self._recent.clear()
        self._remove()


def _remove_store(db: Rdict, directory: str) -> None:
    db.close()
    shutil.rmtree(directory, ignore_errors=True)

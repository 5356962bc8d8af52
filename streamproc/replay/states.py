"""The recordings table of one replay: on disk, with the recently used entries in memory.

A replay folds every partition from offset 0, so it meets every recording the log ever named,
and a dict of states grows with the log: about 2 KiB of Python objects a recording, 788 MiB of
peak RSS for 1M raw events (235 MiB with this store; docs/notes/performance-history.md). Here
the entries live in a RocksDB store (rocksdict, as the worker's ``rocksdb://`` tables keep
theirs) in a temporary directory removed on ``close``, exactly as the worker's table holds them
(the derivation reads and writes both alike), and only the ``cached`` most recently used stay
in memory. A recording's events sit close together in the log, so nearly every fold finds its
entry in memory and writes it back only when it falls out of the cache.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping

from rocksdict import Options, Rdict

from streamproc.core.events import RESERVED_KEY_PREFIX
from streamproc.core.fold import RecordingState

CACHED = 10_000
"""Entries kept in memory: about 20 MiB, and enough that a fold seldom reads the disk."""
WRITE_BUFFER_BYTES = 16 << 20
"""RocksDB's memtable before it flushes to disk (its default, 64 MiB, is a fifth of issue
10's 300 MB)."""
_DELETED = object()


class ReplayStore(MutableMapping[bytes, bytes]):
    """Key -> value, bounded in memory whatever the length of the log."""

    def __init__(self, cached: int = CACHED) -> None:
        self.cached = cached
        self._recent: OrderedDict[bytes, bytes] = OrderedDict()
        directory = tempfile.mkdtemp(prefix="streamproc-replay-")
        options = Options(raw_mode=True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        self._db = Rdict(directory, options)
        self._count = 0
        self._remove = weakref.finalize(self, _remove_store, self._db, directory)
        """Also run when the store is dropped unclosed (a caller of ``replay`` that only
        reads the result), so no directory is left behind."""

    def __getitem__(self, key: bytes) -> bytes:
        value = self._recent.get(key)
        if value is not None:
            self._recent.move_to_end(key)
            return value
        stored = self._db.get(key)
        if stored is None:
            raise KeyError(key)
        return stored

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if key not in self._recent and key not in self._db:
            self._count += 1
        self._recent[key] = value
        self._recent.move_to_end(key)
        if len(self._recent) > self.cached:
            oldest, evicted = self._recent.popitem(last=False)
            self._db[oldest] = evicted

    def __delitem__(self, key: bytes) -> None:
        in_memory = self._recent.pop(key, None) is not None
        on_disk = key in self._db
        if not (in_memory or on_disk):
            raise KeyError(key)
        if on_disk:
            del self._db[key]
        self._count -= 1

    def __iter__(self) -> Iterator[bytes]:
        """Keys in sorted order (RocksDB's key order)."""
        self._flush()
        yield from self._db.keys()

    def __len__(self) -> int:
        return self._count

    def _flush(self) -> None:
        """Write the cached entries through, so the store alone holds every entry."""
        for key, value in self._recent.items():
            self._db[key] = value

    def close(self) -> None:
        """Close the store and remove its directory (the entries are gone after this)."""
        self._recent.clear()
        self._remove()


class ReplayStates(Mapping[str, RecordingState]):
    """The recording states of a replay's table (its other, reserved, keys left out)."""

    def __init__(self, store: ReplayStore | None = None) -> None:
        self.store = store if store is not None else ReplayStore()

    def __getitem__(self, recording_id: str) -> RecordingState:
        key = recording_id.encode()
        if key.startswith(RESERVED_KEY_PREFIX):
            raise KeyError(recording_id)
        return RecordingState.from_json(self.store[key])

    def __iter__(self) -> Iterator[str]:
        """Recording ids in sorted order."""
        for key in self.store:
            if not key.startswith(RESERVED_KEY_PREFIX):
                yield key.decode()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def close(self) -> None:
        self.store.close()


def _remove_store(db: Rdict, directory: str) -> None:
    db.close()
    shutil.rmtree(directory, ignore_errors=True)

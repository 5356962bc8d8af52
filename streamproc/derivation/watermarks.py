"""How far event time has come on each partition of the raw topic, in steps.

The instance join (``join.py``) decides a failed start by event time across every raw
partition, so each partition's fold tells the join where it stands: the newest event time it
has read, rounded down to ``STEP_S`` (a *mark*). A mark is the same whichever worker reads
the partition and however often it restarts, because it depends only on the partition's
records in their log order; it is stored in the recordings table only when it moves on (once
per ``STEP_S`` of event time, not once per event), so a worker that takes the partition over
starts from it.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from streamproc.core.events import RESERVED_KEY_PREFIX

STEP_S = 30.0
"""A failed start is announced within this much event time after its grace has passed."""


class RawWatermarks:
    """The mark of each raw partition, kept in ``store`` (the recordings table)."""

    def __init__(self, store: MutableMapping[bytes, bytes]) -> None:
        self.store = store

    def mark(self, partition: int) -> float:
        stored = self.store.get(_key(partition))
        return float(stored) if stored is not None else 0.0

    def advance(self, partition: int, event_time: float) -> tuple[float, bool]:
        """After an event of ``partition``: its mark, and whether this event moved it."""
        before = self.mark(partition)
        stepped = event_time // STEP_S * STEP_S
        if stepped <= before:
            return before, False
        self.store[_key(partition)] = repr(stepped).encode()
        return stepped, True


def _key(partition: int) -> bytes:
    """Not a recording id (those never start with NUL)."""
    return RESERVED_KEY_PREFIX + b"raw-mark:%d" % partition

"""Progress for long work: a live bar on a terminal, a plain line every few seconds elsewhere.

A bar redrawn with carriage returns is unreadable in a CI log or a ``docker logs`` stream,
so where stderr is not a terminal the same calls print ``desc: 120/200 rec (40.1/s)`` lines.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from tqdm import tqdm

PLAIN_INTERVAL_S = 5.0


class Progress(Protocol):
    n: int

    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


class PlainProgress:
    """tqdm's ``update``/``close`` as a line every ``interval_s``, and one at the end."""

    def __init__(
        self, total: int | None, desc: str, unit: str, file: TextIO, interval_s: float
    ) -> None:
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.interval_s = interval_s
        self.n = 0
        self._started = self._printed = time.monotonic()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._printed >= self.interval_s:
            self._print()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print()

    def _print(self) -> None:
        self._printed = now = time.monotonic()
        rate = self.n / max(now - self._started, 1e-9)
        of_total = f"/{self.total}" if self.total is not None else ""
        print(f"{self.desc}: {self.n}{of_total} {self.unit} ({rate:.1f}/s)", file=self.file)
        self.file.flush()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def progress_bar(
    total: int | None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    file: TextIO | None = None,
    interval_s: float = PLAIN_INTERVAL_S,
) -> Progress:
    """A tqdm bar if ``file`` (stderr) is a terminal, else a :class:`PlainProgress`."""
    file = file or sys.stderr
    if enabled and file.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=file)
    if enabled:
        return PlainProgress(total, desc, unit, file, interval_s)
    return tqdm(total=total, disable=True)

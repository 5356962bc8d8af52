"""CPU time of benchmarked processes, from /proc (Linux): user+system seconds, which hold on a
shared machine where rates wander."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pids: list[int]) -> float | None:
    """User+system CPU time of ``pids`` so far (None off Linux or when one has ended)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def with_children(pid: int) -> list[int]:
    """``pid`` and its direct children (a server's worker processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except OSError:
                continue
            if parent == pid:
                children.append(int(entry.name))
    return [pid, *children]

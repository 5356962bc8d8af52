"""Test helpers shared by unit and integration tests (importable as ``helpers``)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "schemas" / "examples"


def example(provider: str, name: str) -> bytes:
    """An example payload from ``schemas/examples`` (built from the seeds), as raw bytes."""
    return (EXAMPLES / provider / f"{name}.json").read_bytes()

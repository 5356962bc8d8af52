"""One row per benchmark figure, its baseline from the same run, the ratio and the target.

Every benchmark returns ``Figure`` rows so that ``run_all.py`` can print them as one table;
the ratio, not the absolute number, is what compares across these shared, noisy machines.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def table(figures: list[Figure], broker: str | None = None) -> str:
    """A Markdown table (what bench/README.md keeps) of every figure, all on ``broker`` (by
    default the one ``STREAMPROC_BENCH_BROKER`` chooses)."""
    from brokers import broker_kind

    broker = broker or broker_kind()
    lines = [
        "| broker | figure | value | baseline (same run) | baseline value | ratio | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for figure in figures:
        ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}"
        lines.append(
            f"| {broker} | {figure.name} | {_number(figure.value)} {figure.unit} | "
            f"{figure.baseline} | {_number(figure.baseline_value)} | {ratio} | {figure.target} |"
        )
    return "\n".join(lines)

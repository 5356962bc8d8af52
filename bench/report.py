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


def table(figures: list[Figure]) -> str:
    """A Markdown table (what bench/README.md keeps) of every figure."""
    lines = [
        "| figure | value | baseline (same run) | baseline value | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for figure in figures:
        ratio = figure.ratio
        lines.append(
            f"| {figure.name} | {_number(figure.value)} {figure.unit} | {figure.baseline} | "
            f"{_number(figure.baseline_value)} | {'' if ratio is None else f'{ratio:.2f}'} | "
            f"{figure.target} |"
        )
    return "\n".join(lines)

"""Turn the repetitions into one table: medians, min–max, and the Hexagone/Synapse ratio.

A (workload, server) pair with a failed request in any repetition shows
FAILED for every figure of that workload: a run with errors never passes for
a faster one.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from tests.bench.workloads import HIGHER, INFO, LOWER, Figure, Outcome

RATIO = ("hexagone", "synapse")  # the ratio column is Hexagone's median over Synapse's


@dataclass(frozen=True)
class Record:
    server: str
    repetition: int
    workload: str
    outcome: Outcome

    def to_json(self) -> dict:
        o = self.outcome
        return {"server": self.server, "repetition": self.repetition, "workload": self.workload,
                "errors": o.errors, "first_error": o.first_error,
                "figures": [{"label": f.label, "unit": f.unit, "better": f.better, "value": v}
                            for f, v in o.values.items()]}


@dataclass(frozen=True)
class Cell:
    """One server's figure over the repetitions (None when the workload failed there)."""

    median: float | None
    low: float | None
    high: float | None
    errors: int

    def text(self) -> str:
        if self.errors:
            return f"FAILED ({self.errors} errors)"
        if self.median is None:
            return "—"
        return f"{_num(self.median)} ({_num(self.low)}–{_num(self.high)})"


@dataclass(frozen=True)
class Row:
    workload: str
    figure: Figure
    cells: dict[str, Cell]

    def ratio(self) -> float | None:
        """Hexagone's median over Synapse's."""
        a, b = self.cells.get(RATIO[0]), self.cells.get(RATIO[1])
        if not a or not b or a.errors or b.errors or not a.median or not b.median:
            return None
        return a.median / b.median

    def to_json(self, servers: list[str]) -> dict:
        row = {"workload": self.workload, "figure": self.figure.label, "unit": self.figure.unit,
               "better": self.figure.better}
        for s in servers:
            c = self.cells[s]
            row[s] = {"median": c.median, "min": c.low, "max": c.high, "errors": c.errors}
        if set(RATIO) <= set(servers):
            row["ratio"] = self.ratio()
        return row


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def summarize(records: list[Record], servers: list[str]) -> list[Row]:
    """One row per (workload, figure), in the order the figures were first seen."""
    figures: dict[tuple[str, Figure], None] = {}
    for r in records:
        for f in r.outcome.values:
            figures.setdefault((r.workload, f), None)
    workloads = dict.fromkeys(r.workload for r in records)
    rows = []
    for workload in workloads:
        errors = {s: sum(r.outcome.errors for r in records if (r.workload, r.server) == (workload, s))
                  for s in servers}
        for w, figure in figures:
            if w != workload:
                continue
            cells = {}
            for s in servers:
                values = [r.outcome.values[figure] for r in records
                          if (r.workload, r.server) == (workload, s) and figure in r.outcome.values]
                cells[s] = (Cell(statistics.median(values), min(values), max(values), errors[s]) if values
                            else Cell(None, None, None, errors[s]))
            rows.append(Row(workload, figure, cells))
    return rows


_BETTER = {HIGHER: "higher", LOWER: "lower", INFO: "neither"}


def render(rows: list[Row], servers: list[str]) -> str:
    """A Markdown table; with both servers, the Hexagone/Synapse ratio of the medians."""
    header = ["workload", "figure", "unit", "better"] + [f"{s} median (min–max)" for s in servers]
    with_ratio = set(RATIO) <= set(servers)
    if with_ratio:
        header.append("hexagone/synapse")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cols = [row.workload, row.figure.label, row.figure.unit, _BETTER[row.figure.better]]
        cols += [row.cells[s].text() for s in servers]
        if with_ratio:
            ratio = row.ratio()
            cols.append(f"{ratio:.2f}" if ratio is not None else "—")
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def failures(records: list[Record]) -> list[str]:
    """The first error of each failed (workload, server, repetition)."""
    return [f"{r.server} {r.workload} (repetition {r.repetition}): {r.outcome.errors} errors, "
            f"first: {r.outcome.first_error}" for r in records if r.outcome.errors]

"""Evaluate the gates of `config/perf/austen.yaml` on a perf log entry (and the one before it).

A paired metric (the speedup) fails only when its whole bootstrap CI is out of bounds, so a gate
holds on a noisy shared machine and still turns red on a real regression; other metrics are
compared by value. Machine-dependent metrics (absolute figures, the p99/p50 tail ratio) are skipped
on a CPU unless the gate says `absolute_on: any`.
A gate that cannot be evaluated (no previous entry for `relative_to: previous`) is skipped, and
says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .spec import MACHINE_METRICS, PAIRED_METRICS, GateSpec


@dataclass(frozen=True)
class GateResult:
    gate: GateSpec
    value: float  # the figure the gate read (a ratio for relative_to: previous)
    ci: Optional[tuple[float, float]]  # paired metrics
    status: str  # pass | fail | skipped
    reason: str  # for fail: by how much; for skipped: why

    def line(self) -> str:
        g = self.gate
        bound = f"{'≥' if g.at_least is not None else '≤'} {g.bound:g}"
        ci = f" [{self.ci[0]:.3f}, {self.ci[1]:.3f}]" if self.ci else ""
        value = "—" if math.isnan(self.value) else f"{self.value:.3f}{ci}"
        against = ", vs previous entry" if g.relative_to == "previous" else ""
        reason = f"; {self.reason}" if self.reason else ""
        return (f"{self.status.upper()}: {g.name} ({g.metric} of {g.path}, B={g.batch_size}{against}): {value}, "
                f"bound {bound}{reason}")


def _row(entry: dict, gate: GateSpec) -> Optional[dict]:
    for row in entry["rows"]:
        if row["path"] == gate.path and row["batch_size"] == gate.batch_size:
            return row
    return None


def evaluate_gate(gate: GateSpec, entry: dict, previous: Optional[dict]) -> GateResult:
    row = _row(entry, gate)
    if row is None:
        return GateResult(gate, math.nan, None, "skipped", "the entry has no such row")
    if gate.metric in MACHINE_METRICS and gate.absolute_on == "gpu" and entry["device"] != "cuda":
        return GateResult(gate, math.nan, None, "skipped", "machine-dependent figures gate only on a GPU")
    value = float(entry["peak_rss_gib"] if gate.metric == "peak_rss_gib" else row[gate.metric])
    ci = None
    if gate.metric in PAIRED_METRICS and row.get(f"{gate.metric}_ci_low") is not None:
        ci = (float(row[f"{gate.metric}_ci_low"]), float(row[f"{gate.metric}_ci_high"]))
    if gate.relative_to == "previous":
        before = _row(previous, gate) if previous else None
        if before is None:
            return GateResult(gate, math.nan, None, "skipped", "no previous entry with this row")
        base = float(previous["peak_rss_gib"] if gate.metric == "peak_rss_gib" else before[gate.metric])
        value, ci = value / base, (ci[0] / base, ci[1] / base) if ci else None
    low, high = ci if ci else (value, value)
    if gate.at_least is not None:
        failed, gap = high < gate.at_least, gate.at_least - high
    else:
        failed, gap = low > gate.at_most, low - gate.at_most
    if failed:
        what = "the whole CI" if ci else "the value"
        return GateResult(gate, value, ci, "fail", f"{what} misses the bound by {gap:.3f} ({100 * gap / gate.bound:.1f}%)")
    return GateResult(gate, value, ci, "pass", "")


def evaluate(gates: list[GateSpec], entry: dict, previous: Optional[dict]) -> list[GateResult]:
    return [evaluate_gate(g, entry, previous) for g in gates]

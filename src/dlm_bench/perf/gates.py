"""Evaluate the gates of `config/perf/austen.yaml` on a perf log entry (and the one before it).

Every gate has three outcomes. A paired metric (the speedup, the quality delta) carries a bootstrap
CI: the gate **passes** when the whole CI is on the good side of its bound, **fails** when the whole
CI is on the bad side, and is **undecided** when the CI straddles the bound. What undecided counts
as is the gate's own `undecided` setting: a quality gate is a non-inferiority claim ("keeps quality
within 0.05"), which holds only when the whole CI is inside the margin, so it defaults to fail; a
speed gate on a shared CPU defaults to pass (noise must not turn CI red; a real regression moves the
whole CI). Other metrics are compared by value (pass or fail). Machine-dependent metrics (absolute
figures, the p99/p50 tail ratio) are skipped on a CPU unless the gate says `absolute_on: any`. A gate
that cannot be evaluated (no previous entry for `relative_to: previous`) is skipped, and says why.
An undecided quality gate also says how many prompts would decide it at the measured spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..stats import verdict as interval_verdict
from .spec import MACHINE_METRICS, PAIRED_METRICS, GateSpec

Z95 = 1.96  # the normal quantile behind a 95% interval, for the prompt count that would decide a gate


@dataclass(frozen=True)
class GateResult:
    gate: GateSpec
    value: float  # the figure the gate read (a ratio for relative_to: previous)
    ci: Optional[tuple[float, float]]  # paired metrics
    status: str  # pass | fail | undecided | skipped
    reason: str  # for fail: by how much; for undecided: what it counts as and what would decide it; skipped: why

    @property
    def failed(self) -> bool:
        """What `gate` exits non-zero on: a fail, or an undecided gate that counts as one."""
        return self.status == "fail" or (self.status == "undecided" and self.gate.undecided_as == "fail")

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


def prompts_to_decide(n: int, ci: tuple[float, float], value: float, bound: float) -> Optional[int]:
    """Prompts at which a CI of this spread (its half-width at n prompts, shrinking as 1/sqrt(n)) would
    no longer reach the bound; None when the value sits on the bound."""
    half = (ci[1] - ci[0]) / 2
    distance = abs(value - bound)
    return math.ceil(n * (half / distance) ** 2) if distance > 0 else None


def verdict(low: float, high: float, gate: GateSpec) -> tuple[str, float]:
    """pass | fail | undecided for the interval [low, high] against the gate's bound, and by how much the
    nearest end misses it (for fail)."""
    higher_is_better = gate.at_least is not None
    bound = gate.at_least if higher_is_better else gate.at_most
    return interval_verdict(low, high, bound, higher_is_better), (bound - high if higher_is_better else low - bound)


def evaluate_gate(gate: GateSpec, entry: dict, previous: Optional[dict]) -> GateResult:
    row = _row(entry, gate)
    if row is None:
        return GateResult(gate, math.nan, None, "skipped", "the entry has no such row")
    if gate.metric in MACHINE_METRICS and gate.absolute_on == "gpu" and entry["device"] != "cuda":
        return GateResult(gate, math.nan, None, "skipped", "machine-dependent figures gate only on a GPU")
    if gate.metric != "peak_rss_gib" and row.get(gate.metric) is None:
        return GateResult(gate, math.nan, None, "skipped", f"the entry did not measure {gate.metric}")
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
    status, gap = verdict(*(ci if ci else (value, value)), gate)
    if status == "fail":
        what = "the whole CI" if ci else "the value"
        return GateResult(gate, value, ci, "fail", f"{what} misses the bound by {gap:.3f} ({100 * gap / gate.bound:.1f}%)")
    if status == "undecided":
        reason = f"the CI straddles the bound; counts as {gate.undecided_as}"
        # prompts behind the CI: recorded per row; entries before that scored the row's own batch
        n = row.get(f"{gate.metric}_prompts") or (row["batch_size"] if gate.metric == "quality_delta" else None)
        need = prompts_to_decide(int(n), ci, value, gate.bound) if n else None
        if need is not None:
            reason += f"; about {need} prompts would decide it at this spread (measured over {int(n)})"
        return GateResult(gate, value, ci, "undecided", reason)
    return GateResult(gate, value, ci, "pass", "")


def evaluate(gates: list[GateSpec], entry: dict, previous: Optional[dict]) -> list[GateResult]:
    return [evaluate_gate(g, entry, previous) for g in gates]

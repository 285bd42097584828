"""Paired ratios: which pairs of cells the summary publishes a ratio for, and the ratio of a measured pair.

A published ratio (the Speedup Factor, a fast path against the reference sampler, a decode path
against eager `generate`) never comes from two cells timed at different moments: the pairs step
(`src/dlm_bench/sweep/pairs.py`) times the two arms interleaved in one process, and the ratio here is the median of
the per-pair ratios reference / contender (above 1: the contender is faster), with a bootstrap 95%
CI over the pairs. This module only chooses pairs and reads measured ones; it never imports torch.

Pairs chosen from the rows and the parity table:
- `speedup`: for every (N, B) and parity metric with a reached S_parity, LLaMA against LLaDA at
  S_parity as published (eager `generate` against the reference sampler without cache; strict and
  CI-aware S_parity) and at their best (the fastest AR decode path against the fastest diffusion
  sampler/cache at its own S_parity);
- `fast_paths`: the summary's fast-path table (largest N with both architectures, smallest B,
  largest K): every diffusion sampler/cache against the reference sampler without cache, every AR
  decode path against eager.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pandas as pd

from ..config import DEFAULT_MAX_OTHER_CORES, PRECISIONS
from ..labels import ar_decoding_label, engine_label, variant_label
from ..registry import AR, DIFFUSION, IN_PROCESS
from ..quality.parity import REACHED
from ..stats import NO_ESTIMATE, RESAMPLES, Estimate, bootstrap_median, paired_ratio_test
from .baseline import DIFFUSION_PATH, baseline, published_parity_rows, with_forward_column
from .parity_rule import ParityRule, Scores, path_parity



@dataclass(frozen=True)
class WantedPair:
    """Two finished cells whose ratio the summary publishes: reference / contender latency. A self-pair
    (kind `self`) is one cell against itself, the pairs step's calibration; `beside` names an engine cell whose
    process is kept running, idle, while it is timed."""

    kind: str  # one of config.PAIR_KINDS
    reference_cell_id: str
    contender_cell_id: str
    beside: Optional[str] = None


def per_pair_ratios(reference_ms: Sequence[float], contender_ms: Sequence[float]) -> list[float]:
    """reference / contender of each pair (pairs with a zero contender time left out)."""
    return [r / c for r, c in zip(reference_ms, contender_ms) if c > 0]


def paired_ratio(reference_ms: Sequence[float], contender_ms: Sequence[float], resamples: int = RESAMPLES,
                 seed: int = 0) -> Estimate:
    """Median over pairs of reference / contender, with a percentile-bootstrap 95% CI over the pairs."""
    return bootstrap_median(per_pair_ratios(reference_ms, contender_ms), resamples, seed)


def _engine_cells(engine_rows: Optional[pd.DataFrame], kind: str, model: str, seq_len: int, batch_size: int,
                  quantized: bool) -> pd.DataFrame:
    """The finished rows of other engines (llama.cpp, an OpenAI endpoint) of one model and kind at (N, B); only
    weights at the sweep's own precision (a cell's `precision`, fp32: f32 GGUF) unless `quantized`."""
    if engine_rows is None or engine_rows.empty:
        return pd.DataFrame()
    rows = engine_rows[(engine_rows["status"] == "ok") & (engine_rows["kind"] == kind)
                       & (engine_rows["model_name"] == model) & (engine_rows["seq_len"] == seq_len)
                       & (engine_rows["batch_size"] == batch_size)]
    if not quantized:
        same = [PRECISIONS[p].gguf if p in PRECISIONS else None for p in rows["precision"]]
        rows = rows[rows["weights_format"] == pd.Series(same, index=rows.index, dtype=object)]
    return rows


def fastest_engine_ar(engine_rows: Optional[pd.DataFrame], model: str, seq_len: int, batch_size: int,
                      quantized: bool = False, decoding: Optional[str] = None) -> Optional[pd.Series]:
    """The fastest AR row of another engine for this model at (N, B) on the cells' median L_e2e
    (`_engine_cells`), among those of the AR decoding given (None: any); None when there is none."""
    rows = _engine_cells(engine_rows, AR, model, seq_len, batch_size, quantized)
    if decoding is not None and not rows.empty:
        rows = rows[[ar_decoding_label(r) == decoding for _, r in rows.iterrows()]]
    return None if rows.empty else rows.sort_values("latency_ms_median").iloc[0]


def fastest_engine_diffusion(engine_rows: Optional[pd.DataFrame], parity_row: pd.Series, quantized: bool = False,
                             scores: Optional[Scores] = None, rule: Optional[ParityRule] = None,
                             resamples: int = RESAMPLES) -> Optional[pd.Series]:
    """The fastest diffusion row of another engine that reaches parity with the parity row's AR quality cell on
    its metric: each engine path (engine, weights, sampler) of the row's diffusion model at (N, B) is tested as
    the torch paths are (`selection.parity_rule.path_parity`: the paired non-inferiority test on the selection
    half of its per-prompt scores, degenerate K excluded). The row returned carries that K as `s_parity` and the
    path's parity columns (`parity_columns`); None when no engine path reaches parity."""
    rows = _engine_cells(engine_rows, DIFFUSION, parity_row["diffusion_model"], parity_row["seq_len"],
                         parity_row["batch_size"], quantized)
    metric = parity_row["metric"]
    if rows.empty or f"{metric}_mean" not in rows:
        return None
    ar_cell = pd.Series({"cell_id": parity_row.get("ar_quality_cell_id"), f"{metric}_mean": parity_row["ar_quality"],
                         f"{metric}_ci_low": math.nan, f"{metric}_ci_high": math.nan,
                         "degenerate_mean": parity_row.get("ar_degenerate", math.nan),
                         "setting_seed": parity_row.get("split_seed", 0)})
    found = []
    for _, path in rows.groupby(["engine", "weights_format", "sampler"], dropna=False):
        scored = path.dropna(subset=[f"{metric}_mean"])
        cells_by_k = {int(k): at_k.iloc[0] for k, at_k in scored.groupby("steps")}
        tested = path_parity(cells_by_k, ar_cell, metric, scores or Scores(), rule or ParityRule(), resamples)
        if tested is not None and tested.outcome == REACHED:
            cell = cells_by_k[tested.tested].copy()
            cell["parity_columns"] = tested.columns()
            found.append(cell)
    return min(found, key=lambda c: c["latency_ms_median"]) if found else None


def best_parity_rows(parity: pd.DataFrame, engine_rows: Optional[pd.DataFrame] = None,
                     pairs: Optional[pd.DataFrame] = None, resamples: int = RESAMPLES,
                     quantized: bool = False, quality: Optional[Mapping] = None,
                     rule: Optional[ParityRule] = None) -> pd.DataFrame:
    """Per (N, B, metric, AR decoding), the parity row of both sides at their best, among the rows that reach
    parity (tested on the selection half of the prompts) with a timed cell (chosen on the cells' medians; the ratio
    itself is measured in pairs): the fastest AR path over every decode path and every engine at the sweep's
    precision and that decoding (`fastest_engine_ar`) against the fastest diffusion path at its own S_parity over
    every sampler, cache and forward and every engine path (`fastest_engine_diffusion`); quantized weights only
    with `quantized`. The row keeps its confirmation on the held-out half. An engine's AR quality is the model's
    (the same weights and decoding); an engine's diffusion path reaches parity on its own scores. The Speedup
    Factor is the pair of the two chosen cells. `ar_path` and `diffusion_path` name the two sides."""
    if parity.empty:
        return parity
    timed = parity[parity["reached"] & parity["diffusion_cell_id"].notna()]
    measured = pair_lookup(pairs if pairs is not None else pd.DataFrame())
    scores = Scores(quality)
    best = []
    for (n, b, _, decoding), group in timed.groupby(["seq_len", "batch_size", "metric", "ar_decoding"]):
        decode = group.sort_values("ar_latency_ms").iloc[0]["ar_decode"]
        fastest = group.sort_values("diffusion_latency_ms").iloc[0]
        same_path = (group[DIFFUSION_PATH] == fastest[DIFFUSION_PATH]).all(axis=1)
        row = group[(group["ar_decode"] == decode) & same_path].iloc[0].copy()
        row["ar_path"] = decode
        row["diffusion_path"] = variant_label({"kind": DIFFUSION, **{c: row[c] for c in DIFFUSION_PATH}})
        engine = fastest_engine_ar(engine_rows, row["ar_model"], n, b, quantized, decoding)
        moved = False
        if engine is not None and engine["latency_ms_median"] < row["ar_latency_ms"]:
            row.update({"ar_path": engine_label(engine), "ar_cell_id": str(engine["cell_id"]),
                        "ar_latency_ms": float(engine["latency_ms_median"])})
            moved = True
        diffusion = fastest_engine_diffusion(engine_rows, row, quantized, scores, rule, resamples)
        if diffusion is not None and diffusion["latency_ms_median"] < row["diffusion_latency_ms"]:
            row.update({"diffusion_path": variant_label(diffusion), "diffusion_cell_id": str(diffusion["cell_id"]),
                        "diffusion_latency_ms": float(diffusion["latency_ms_median"]), **diffusion["parity_columns"]})
            moved = True
        if moved:  # the ratio is the pair of the cells chosen, not the torch pair of the parity row
            est, quality_of_pair = pair_estimate(measured.get((str(row["ar_cell_id"]), str(row["diffusion_cell_id"]))),
                                                 resamples)
            row.update({"paired": bool(quality_of_pair), "speedup_factor": est.value,
                        "speedup_factor_ci_low": est.ci_low, "speedup_factor_ci_high": est.ci_high})
            for key in MEASUREMENT_KEYS:
                row[key] = quality_of_pair.get(key, "" if key == "contention" else math.nan)
        best.append(row)
    return pd.DataFrame(best)


def _speedup_pairs(parity: pd.DataFrame, engine_rows: Optional[pd.DataFrame], quantized: bool,
                   quality: Optional[Mapping], rule: Optional[ParityRule]) -> list[WantedPair]:
    wanted = []
    for _, r in published_parity_rows(parity).iterrows():
        if r["reached"] and pd.notna(r["diffusion_cell_id"]):
            wanted.append(WantedPair("speedup", str(r["ar_cell_id"]), str(r["diffusion_cell_id"])))
    for engines in (engine_rows, None):  # both sides at their best over every engine, and in PyTorch alone
        for _, r in best_parity_rows(parity, engines, quantized=quantized, quality=quality, rule=rule).iterrows():
            wanted.append(WantedPair("speedup", str(r["ar_cell_id"]), str(r["diffusion_cell_id"])))
    return wanted


def fast_path_cells(ok: pd.DataFrame) -> pd.DataFrame:
    """The rows of the summary's fast-path table: largest N with both architectures (else the largest N),
    smallest B, and for diffusion the largest K."""
    if ok.empty:
        return ok
    both = ok.groupby("seq_len")["kind"].nunique()
    n = both[both == both.max()].index.max()
    sub = ok[(ok["seq_len"] == n) & (ok["batch_size"] == ok["batch_size"].min())]
    dl = sub[sub["kind"] == DIFFUSION]
    return pd.concat([sub[sub["kind"] == AR], dl[dl["steps"] == dl["steps"].max()]])


def as_published_cell_id(part: pd.DataFrame) -> str | None:
    """The one as-published cell among one model's fast-path cells (the reference of its ratios), or None."""
    base = baseline(part)
    return str(base["cell_id"].iloc[0]) if len(base) == 1 else None


def _fast_path_pairs(ok: pd.DataFrame) -> list[WantedPair]:
    wanted = []
    for _, part in fast_path_cells(ok).groupby("model_name"):
        reference = as_published_cell_id(part)
        if reference is not None:
            wanted += [WantedPair("fast_paths", reference, str(c)) for c in part["cell_id"] if str(c) != reference]
    return wanted


def wanted_pairs(rows: pd.DataFrame, parity: pd.DataFrame, kinds: Sequence[str],
                 engine_rows: Optional[pd.DataFrame] = None, quantized: bool = False,
                 quality: Optional[Mapping] = None, rule: Optional[ParityRule] = None) -> list[WantedPair]:
    """The pairs of the given kinds that the summary would publish, each once, in a fixed order (`rows`:
    the torch rows; `engine_rows`: the other engines' rows, candidates for the AR side at its best; `quality` and
    `rule`: the per-prompt scores and the parity rule the parity table was made with)."""
    rows = with_forward_column(rows)
    ok = rows[rows["status"] == "ok"]
    found: list[WantedPair] = []
    if "speedup" in kinds:
        found += _speedup_pairs(parity, engine_rows, quantized, quality, rule)
    if "fast_paths" in kinds:
        found += _fast_path_pairs(ok)
    if "self" in kinds:
        found += self_pairs(found, pd.concat([ok, engine_rows]) if engine_rows is not None else ok)
    unique = {}
    for pair in found:
        unique.setdefault((pair.reference_cell_id, pair.contender_cell_id, pair.beside), pair)
    return list(unique.values())


def self_pairs(published: Sequence[WantedPair], rows: pd.DataFrame) -> list[WantedPair]:
    """The calibration of a pairs step: for each engine among the published pairs' arms (torch, llama.cpp at
    each weights format, an endpoint), its first arm paired with itself; and where the arms include another
    engine, the torch arm paired with it first, against itself with that engine's process alive beside it.
    Each should give a ratio of 1.00 whose CI contains 1."""
    label = {str(r["cell_id"]): engine_label(r) for _, r in rows.iterrows()} if not rows.empty else {}
    arms = list(dict.fromkeys(c for p in published for c in (p.reference_cell_id, p.contender_cell_id)
                              if c in label))
    first = {}
    for cell in arms:
        first.setdefault(label[cell], cell)
    out = [WantedPair("self", cell, cell) for cell in first.values()]
    for pair in published:
        ends = (pair.reference_cell_id, pair.contender_cell_id)
        engines = [c for c in ends if label.get(c, IN_PROCESS) != IN_PROCESS]
        torch_arms = [c for c in ends if label.get(c) == IN_PROCESS]
        if engines and torch_arms:
            out.append(WantedPair("self", torch_arms[0], torch_arms[0], beside=engines[0]))
            break
    return out


@dataclass(frozen=True)
class SelfPair:
    """A measured self-pair: the cell, what ran beside it, its ratio with CI, and the CPU cores the other side's
    processes used during its runs (the larger arm's median; NaN where nothing was watched). It passes when the
    CI contains 1 and nothing beside it took more than `max_other_cores` (the load guard's default limit)."""

    cell: str
    beside: Optional[str]
    estimate: Estimate
    pairs: int
    other_cores: float = math.nan

    @property
    def interfered(self) -> bool:
        return not math.isnan(self.other_cores) and self.other_cores > DEFAULT_MAX_OTHER_CORES

    @property
    def passes(self) -> bool:
        return not (self.estimate.ci_low > 1.0 or self.estimate.ci_high < 1.0 or self.interfered)


def other_cores(pair: pd.Series) -> float:
    """The CPU cores the other side's processes used while each arm ran: per arm the median over its runs of
    other-side CPU ms / run ms, the larger of the two arms (NaN where it was not recorded)."""
    per_arm = []
    for side in ("reference", "contender"):
        cpu, ms = ms_list(pair.get(f"{side}_other_cpu_ms_all")), ms_list(pair.get(f"{side}_ms_all"))
        shares = [c / m for c, m in zip(cpu, ms) if m > 0 and not math.isnan(c)]
        if shares:
            per_arm.append(statistics.median(shares))
    return max(per_arm) if per_arm else math.nan


def measured_self_pairs(pairs: pd.DataFrame, resamples: int = RESAMPLES) -> list[SelfPair]:
    """The study's measured self-pairs (status ok)."""
    if pairs.empty or "kind" not in pairs:
        return []
    out = []
    for _, r in pairs[(pairs["kind"] == "self") & (pairs["status"] == "ok")].iterrows():
        est, quality = pair_estimate(r, resamples)
        beside = r.get("beside")
        out.append(SelfPair(str(r["reference"]), beside if isinstance(beside, str) and beside else None, est,
                            int(quality["fewest_repeats"]), other_cores(r)))
    return out


def pair_lookup(pairs: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """Measured pairs (status ok) by (reference cell id, contender cell id); self-pairs are the calibration and
    publish no ratio."""
    if pairs.empty:
        return {}
    ok = pairs[(pairs["status"] == "ok") & (pairs.get("kind", "") != "self")]
    return {(str(r["reference_cell_id"]), str(r["contender_cell_id"])): r for _, r in ok.iterrows()}


def ms_list(text) -> list[float]:
    """A ';'-joined list of milliseconds from a CSV cell."""
    return [float(x) for x in str(text).split(";")] if isinstance(text, str) and text else []


MEASUREMENT_KEYS = ("ratio_cv", "fewest_repeats", "load_change", "contention", "other_cpu_cores", "pairs_above",
                    "pairs_below", "direction_p", "reference_in_pair", "contender_in_pair", "alone_ratio",
                    "alone_ratio_low", "alone_ratio_high")  # what pair_estimate says of a pair's measurement


def pair_estimate(pair: pd.Series | None, resamples: int = RESAMPLES) -> tuple[Estimate, dict]:
    """The paired ratio of a measured pair (its magnitude: the median of the per-pair ratios with a bootstrap
    CI) and what its measurement supports (for the verdict): the pairs above and below 1 with the sign test's
    p-value (its direction, stats.paired_ratio_test), the CV of the per-pair ratios (drift that moves both arms
    alike cancels in them; it says whether the magnitude is precise), the number of pairs, the change of the
    load average during the pair, the load guard's judgement of the pair (`contention`: "quiet", what made it
    contended, or "" where it was not judged) and the CPU cores other processes used during it."""
    if pair is None:
        return NO_ESTIMATE, {}
    reference, contender = ms_list(pair["reference_ms_all"]), ms_list(pair["contender_ms_all"])
    before, after = pair.get("load_1m_before"), pair.get("load_1m_after")
    load_change = abs(float(after) - float(before)) if pd.notna(before) and pd.notna(after) else math.nan
    test = paired_ratio_test(reference, contender, resamples)
    contention = pair.get("contention")
    alone = alone_check(pair) or NO_ALONE_CHECK
    return test.estimate, {
        "ratio_cv": test.cv, "fewest_repeats": len(per_pair_ratios(reference, contender)), "load_change": load_change,
        "contention": contention if isinstance(contention, str) else "",
        "other_cpu_cores": float(pair.get("other_cpu_cores", math.nan)), "pairs_above": test.above,
        "pairs_below": test.below, "direction_p": test.p_value, "reference_in_pair": alone.reference_in_pair,
        "contender_in_pair": alone.contender_in_pair, "alone_ratio": alone.alone.value,
        "alone_ratio_low": alone.alone.low, "alone_ratio_high": alone.alone.high}


@dataclass(frozen=True)
class CellRatio:
    """The ratio of two cells' median latencies (reference / contender), and the range their repetitions span
    (the fastest reference over the slowest contender up to the slowest over the fastest)."""

    value: float
    low: float
    high: float

    def disagrees(self, ci_low: float, ci_high: float) -> bool:
        """Whether a paired ratio's CI and this range do not overlap (NaN: nothing to compare)."""
        if any(math.isnan(x) for x in (self.low, self.high, ci_low, ci_high)):
            return False
        return ci_high < self.low or ci_low > self.high

    @classmethod
    def of_spans(cls, reference: Sequence[float], contender: Sequence[float]) -> "CellRatio":
        """From each side's (median, fastest, slowest) latency: the medians' ratio, and the span from the fastest
        reference over the slowest contender to the slowest over the fastest."""
        (r_mid, r_fast, r_slow), (c_mid, c_fast, c_slow) = reference, contender
        return cls(r_mid / c_mid, r_fast / c_slow, r_slow / c_fast)


def _span(runs_ms: Sequence[float]) -> tuple[float, float, float]:
    """Runs' (median, fastest, slowest) latency."""
    return statistics.median(runs_ms), min(runs_ms), max(runs_ms)


@dataclass(frozen=True)
class AloneCheck:
    """A measured pair against its arms timed alone at the pair's moment (`pairs.solo` runs each, right before
    the pairs): each arm's median inside the pair over its median alone (1.00: the pairing cost it nothing),
    and the ratio of the two blocks alone beside the paired ratio."""

    reference_in_pair: float
    contender_in_pair: float
    alone: CellRatio


def alone_check(pair: pd.Series) -> Optional[AloneCheck]:
    """The pair's check against its arms alone; None for a pair measured without runs alone."""
    ref_alone, con_alone = ms_list(pair.get("reference_solo_ms_all")), ms_list(pair.get("contender_solo_ms_all"))
    ref, con = ms_list(pair.get("reference_ms_all")), ms_list(pair.get("contender_ms_all"))
    if not (ref_alone and con_alone and ref and con):
        return None
    return AloneCheck(statistics.median(ref) / statistics.median(ref_alone),
                      statistics.median(con) / statistics.median(con_alone),
                      CellRatio.of_spans(_span(ref_alone), _span(con_alone)))


NO_ALONE_CHECK = AloneCheck(math.nan, math.nan, CellRatio(math.nan, math.nan, math.nan))  # no runs alone


def cell_ratio(reference: pd.Series, contender: pd.Series) -> CellRatio:
    """The cells' own ratio of a pair (their medians, and the span of their repetitions)."""
    def num(row: pd.Series, column: str) -> float:
        value = row.get(column, math.nan)
        return float(value) if value is not None and pd.notna(value) else math.nan

    def span(row: pd.Series) -> tuple[float, float, float]:
        return num(row, "latency_ms_median"), num(row, "latency_ms_min"), num(row, "latency_ms_max")

    return CellRatio.of_spans(span(reference), span(contender))


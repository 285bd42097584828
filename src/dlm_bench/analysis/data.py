"""Result files -> DataFrames for the analysis, with the guards that keep comparisons honest.

Reads only result files (raw_metrics.csv, overhead.json); never a model, never torch.
"""

from __future__ import annotations

import logging
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from ..labels import cell_label
from ..stats import CV_NO_VERDICT, RESAMPLES
from ..measure.benchmarks import read_targets
from ..results import QUALITY_FILE, read_quality, read_rows
from ..selection.baseline import split_engines, with_forward_column
from ..selection.pairs import SelfPair, best_parity_rows, measured_self_pairs
from ..selection.parity import parity_table
from ..selection.parity_rule import ParityRule

log = logging.getLogger(__name__)

GUARDED_COLUMNS = ("hardware", "precision", "attention_kernel")
MIN_REPEATS = 3
MAX_LOAD_CHANGE = 1.0  # change of the 1-minute load average across a cell above which its timing is not trusted


# Okabe-Ito, colour-blind safe
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


class MixedRowsError(ValueError):
    """Rows from different hardware/precision/attention kernels would share one comparison."""


@dataclass
class OtherStudy:
    """A committed study the summary quotes beside this one (the config's `see_also`): its name, the link to its
    summary from the summary being written, and its results."""

    name: str
    link: str
    results: "Results"


@dataclass
class Results:
    rows: pd.DataFrame  # every row of raw_metrics.csv (ok, oom and error)
    parity: pd.DataFrame  # S_parity and Speedup Factor rows (empty without quality scores)
    warnings: list[str] = field(default_factory=list)
    overhead: Optional[dict] = None  # overhead.json of scripts/profile_overhead.py, when present
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # pairs.csv: the paired measurements
    benchmarks: list[dict] = field(default_factory=list)  # benchmarks.json: targets measured by scripts/bench_*.py
    engine_rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # llamacpp / openai cells (`rows`: torch)
    per_prompt: pd.DataFrame = field(default_factory=pd.DataFrame)  # per_prompt.csv: engine cells, per prompt
    quality: dict = field(default_factory=dict)  # quality_metrics.json: each scored cell's per-prompt scores
    resamples: int = RESAMPLES  # bootstrap resamples of every interval the analysis computes
    quantized_best: bool = False  # the AR side at its best may be quantized engine weights (pairs.quantized_best)
    calibration: dict = field(default_factory=dict)  # calibration.json: measured ceilings by hardware name
    see_also: list[OtherStudy] = field(default_factory=list)  # studies of the same question the summary quotes
    rule: ParityRule = field(default_factory=ParityRule)  # the parity test's margins (quality.parity_margin)

    @property
    def best(self) -> pd.DataFrame:
        """The parity rows of both sides at their best, the AR side over every engine (selection.pairs)."""
        return best_parity_rows(self.parity, self.engine_rows, self.pairs, self.resamples, self.quantized_best,
                                self.quality, self.rule)

    @property
    def ok(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == "ok"]

    @property
    def best_torch(self) -> pd.DataFrame:
        """Both sides at their best in PyTorch alone (no other engine on either side): the pairing beside the
        headline whenever another engine is at its best."""
        return best_parity_rows(self.parity, None, self.pairs, self.resamples, self.quantized_best, self.quality,
                                self.rule)

    @property
    def rows_by_id(self) -> dict[str, pd.Series]:
        """Every row, a torch cell's or another engine's, by cell id."""
        return {str(r["cell_id"]): r for _, r in self.every_row.iterrows()}

    @property
    def self_pairs(self) -> list[SelfPair]:
        """The pairs step's calibration: each measured self-pair with its ratio and CI."""
        return measured_self_pairs(self.pairs, self.resamples)

    @property
    def biased(self) -> bool:
        """Whether a self-pair's CI excludes 1: then the study's pairs are biased and no ratio carries a verdict."""
        return any(not p.passes for p in self.self_pairs)

    @property
    def every_row(self) -> pd.DataFrame:
        """The torch rows and the other engines' rows together."""
        return pd.concat([self.rows, self.engine_rows]) if not self.engine_rows.empty else self.rows

    @property
    def synthetic(self) -> bool:
        """Whether any row, a torch cell's or another engine's, ran on random weights."""
        return bool((self.every_row["weights"] == "synthetic").any())

    def caption(self) -> str:
        ok = self.ok if not self.ok.empty else self.every_row  # torch rows name the kernel; engine rows, n/a
        if not (ok["status"] == "ok").any() and (self.every_row["status"] == "ok").any():
            ok = self.every_row[self.every_row["status"] == "ok"]
        parts = [", ".join(sorted(ok[c].dropna().astype(str).unique())) for c in ("hardware", "precision",
                                                                                  "attention_kernel")]
        weights = ("SYNTHETIC random-init weights: timing only, quality is a smoke test" if self.synthetic
                   else "pretrained weights")
        return f"{parts[0]} | {parts[1]} | attention: {parts[2]} | {weights}"


def check_comparable(df: pd.DataFrame, facet: tuple[str, ...] = ()) -> None:
    """Refuse rows that differ in hardware, precision or attention kernel (unless faceted by it)."""
    for column in GUARDED_COLUMNS:
        if column in facet or column not in df:
            continue
        values = sorted(df[column].dropna().astype(str).unique())
        if len(values) > 1:
            raise MixedRowsError(f"rows from different {column} values {values} cannot share one figure or table; "
                                 f"analyse them separately or facet by {column}")


def quality_warnings(df: pd.DataFrame) -> list[str]:
    """Cells with too few repetitions or a high run-to-run spread."""
    out = []
    ok = df[df["status"] == "ok"]
    for _, r in ok.iterrows():
        label = cell_label(r)
        if r["repeats"] < MIN_REPEATS:
            out.append(f"{label}: only {int(r['repeats'])} repetitions (< {MIN_REPEATS})")
        if r["latency_ms_cv"] > CV_NO_VERDICT:
            out.append(f"{label}: run-to-run CV {100 * r['latency_ms_cv']:.1f}% (> {100 * CV_NO_VERDICT:.0f}%)")
    return out


def default_facets(rows: pd.DataFrame) -> tuple[str, ...]:
    """Columns every analysis of these rows facets by: the attention kernel when the rows were allowed
    to fall back to another kernel (each such row names the kernel that ran)."""
    allowed = rows.get("setting_allow_attention_mismatch")
    return ("attention_kernel",) if allowed is not None and allowed.astype(str).eq("True").any() else ()


def load_results(input_dir: str | Path, facet: tuple[str, ...] = (), resamples: int = RESAMPLES,
                 quantized_best: bool = False, margins: Optional[dict] = None) -> Results:
    """Read the tables of one results folder and apply the guards (facets add to `default_facets`); every
    interval computed from them uses `resamples` bootstrap resamples, and parity is tested with the parity
    metrics' `margins` (the config's quality.parity_margin; unset metrics keep their defaults)."""
    input_dir = Path(input_dir)
    csv_path = input_dir / "raw_metrics.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no results (run the sweep first)")
    rows, engine_rows = split_engines(with_forward_column(read_rows(csv_path)))
    check_comparable(rows[rows["status"] == "ok"], tuple(facet) + default_facets(rows))
    per_prompt_path = input_dir / "per_prompt.csv"
    per_prompt = (pd.read_csv(per_prompt_path, dtype={"cell_id": str}) if per_prompt_path.is_file()
                  else pd.DataFrame())
    pairs_path = input_dir / "pairs.csv"
    pairs = pd.read_csv(pairs_path, dtype={c: str for c in ("pair_id", "reference_cell_id", "contender_cell_id")}) if pairs_path.is_file() else pd.DataFrame()
    quality = read_quality(input_dir / QUALITY_FILE)
    rule = ParityRule(dict(margins or {}))
    parity = parity_table(rows, pairs, resamples, quality, rule)
    warnings = quality_warnings(rows)
    overhead_path = input_dir / "overhead.json"
    overhead = json.loads(overhead_path.read_text()) if overhead_path.is_file() else None
    calibration_path = input_dir / "calibration.json"
    return Results(rows, parity, warnings, overhead, pairs, read_targets(input_dir / "benchmarks.json"),
                   engine_rows, per_prompt, quality, resamples, quantized_best,
                   json.loads(calibration_path.read_text()) if calibration_path.is_file() else {}, rule=rule)

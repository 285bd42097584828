"""The quality metrics a cell is scored on: one table of names, labels and directions.

Every metric is stored per cell as a mean with a bootstrap 95% interval (columns `<name>_mean`,
`<name>_ci_low`, `<name>_ci_high`). `parity` marks the metrics S_parity is computed for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class QualityMetric:
    """A metric: its label, which direction is better, whether S_parity is computed on it, whether paired
    differences are taken on the log scale (a ratio metric), and the default non-inferiority margin of its paired
    difference (docs-vibe/quality.md gives the reasoning; `quality.parity_margin` overrides it)."""

    name: str
    label: str
    higher_is_better: Optional[bool]  # None: descriptive only (no better or worse)
    parity: bool = False  # S_parity and the Speedup Factor are computed for it
    log_scale: bool = False
    margin: Optional[float] = None


QUALITY_METRICS: dict[str, QualityMetric] = {m.name: m for m in (
    QualityMetric("bertscore_f1", "BERTScore F1 (higher is better)", True, parity=True, margin=0.02),
    QualityMetric("gen_ppl", "generative perplexity (lower is better)", False, parity=True, log_scale=True,
                  margin=0.1),
    QualityMetric("bertscore_precision", "BERTScore precision", True),
    QualityMetric("bertscore_recall", "BERTScore recall", True),
    QualityMetric("ref_ppl", "perplexity of the reference continuation", None),
    QualityMetric("unigram_entropy_bits", "unigram entropy (bits)", None),
    QualityMetric("distinct_1", "distinct-1", True),
    QualityMetric("distinct_2", "distinct-2", True),
    QualityMetric("degenerate", "share of degenerate outputs (distinct-2 < 0.5)", False),
)}
PARITY_METRICS = {name: m for name, m in QUALITY_METRICS.items() if m.parity}
ESTIMATE_PARTS = ("mean", "ci_low", "ci_high")

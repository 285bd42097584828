"""Rebuild every committed study's derived files from its records: tables, summary, figures, paper sections.

    python scripts/rebuild_studies.py                 # every study in STUDIES
    python scripts/rebuild_studies.py cpu_austen_trained

What a fresh clone's `dlm-bench merge` does for one study, for all of them at once and without the models
(a merge reads records, never weights): pack the records, rebuild raw_metrics.csv, pairs.csv and the rest,
then run the analysis with the study config's own settings (bootstrap resamples, quantized_best, see_also)
and regenerate its GENERATED section of paper.md. Needed after a change to the row schema or the analysis;
tests/test_committed_studies.py checks that a fresh clone rebuilds the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from dlm_bench.analysis.report import analyze
from dlm_bench.results import PairStore, ResultStore
from dlm_bench.stats import RESAMPLES

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Study:
    """A committed study: its folder under results/raw_data, the config that made it, its paper section."""

    name: str
    config: str
    paper_section: Optional[str]  # None: quoted in the paper's prose only
    analysed: bool = True  # False: tables only (the cost validation has its own report, scripts/validate_cost_model.py)


STUDIES = (Study("cpu_mini_synthetic", "config/experiments_mini.yaml", "results"),
           Study("cpu_austen_trained", "config/experiments_austen.yaml", "austen"),
           Study("cpu_austen_engines", "config/experiments_engines.yaml", "engines"),
           Study("cpu_midsize_engines", "config/experiments_engines_midsize.yaml", None),
           Study("cpu_cost_validation", "config/experiments_cost_validation.yaml", None, analysed=False))


def analysis_settings(config: Path, root: Path = ROOT) -> dict:
    """The analysis settings of a study's config, read from its YAML (its models need not exist here)."""
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    return {"resamples": (raw.get("quality") or {}).get("bootstrap_resamples", RESAMPLES),
            "quantized_best": bool((raw.get("pairs") or {}).get("quantized_best", False)),
            "see_also": tuple(root / p for p in raw.get("see_also") or ()),
            "margins": (raw.get("quality") or {}).get("parity_margin") or {}}


def rebuild(study: Study, root: Path = ROOT, paper: Optional[Path] = None) -> dict[str, Path]:
    """Merge one study's records and run its analysis in place (figures under results/figures/<study>)."""
    folder = root / "results" / "raw_data" / study.name
    out = {"raw_metrics": ResultStore(folder).merge(), "pairs": PairStore(folder).merge()}
    if not study.analysed:
        return out
    paper = paper if paper is not None else root / "paper.md"
    return analyze(folder, root / "results" / "figures" / study.name,
                   paper=paper if study.paper_section else None, section=study.paper_section or "results",
                   **analysis_settings(root / study.config, root))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="*", help=f"which (default: all): {', '.join(s.name for s in STUDIES)}")
    args = p.parse_args()
    chosen = [s for s in STUDIES if not args.studies or s.name in args.studies]
    unknown = set(args.studies) - {s.name for s in STUDIES}
    if unknown:
        print(f"argument error: {', '.join(sorted(unknown))}: not a committed study; allowed: "
              f"{', '.join(s.name for s in STUDIES)}", file=sys.stderr)
        return 2
    for study in chosen:
        out = rebuild(study)
        print(f"{study.name}: {len(out)} files ({', '.join(sorted(p.name for p in out.values()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures, summary.md and (optionally) paper.md's generated section from one results folder.

    python scripts/analyze.py --input results/raw_data/austen_quick --output results/figures/austen_quick
    python scripts/analyze.py --input results/raw_data/cpu_mini_synthetic --output results/figures/cpu_mini_synthetic \\
        --summary results/summary.md --paper paper.md
"""

import argparse
import logging
import sys
from pathlib import Path

from dlm_bench.analysis.data import MixedRowsError
from dlm_bench.analysis.report import analyze
from dlm_bench.stats import RESAMPLES


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="a results folder (raw_metrics.csv, pairs.csv, ...)")
    p.add_argument("--output", required=True, help="folder for the PNG figures")
    p.add_argument("--summary", help="summary Markdown file (default: <input>/summary.md)")
    p.add_argument("--paper", help="regenerate a GENERATED section of this paper.md")
    p.add_argument("--section", default="results", help="which GENERATED section of --paper (default: results)")
    p.add_argument("--facet", nargs="+", default=[], choices=["hardware", "precision", "attention_kernel"],
                   help="allow rows that differ in these columns")
    p.add_argument("--quantized_best", action="store_true",
                   help="the AR side at its best may be an engine's quantized weights (the config's pairs.quantized_best)")
    p.add_argument("--bootstrap_resamples", type=int, default=RESAMPLES,
                   help=f"resamples of every bootstrap interval (the config's quality.bootstrap_resamples; "
                        f"default {RESAMPLES})")
    p.add_argument("--see_also", nargs="+", default=[], type=Path,
                   help="results folders of other studies of the same question, quoted in the summary (the config's "
                        "see_also)")
    args = p.parse_args()
    if args.bootstrap_resamples < 1:
        p.error(f"--bootstrap_resamples: {args.bootstrap_resamples} is not allowed; allowed: integers >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        out = analyze(Path(args.input), Path(args.output), Path(args.summary) if args.summary else None,
                      Path(args.paper) if args.paper else None, tuple(args.facet), args.section,
                      args.bootstrap_resamples, args.quantized_best, tuple(args.see_also))
    except (MixedRowsError, FileNotFoundError, ValueError) as exc:
        print(f"analysis error: {exc}", file=sys.stderr)
        return 2
    for name, path in out.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

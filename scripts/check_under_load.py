"""Do the published ratios survive a competing load? Two runs of one config on the same commit, the
second with busy processes started part-way through; the Speedup Factors of the two must have
overlapping CIs, or the loaded run must give its own no verdict (the load guard marks a pair taken beside
the busy processes contended).

    python scripts/check_under_load.py --config config/experiments_mini.yaml --out /tmp/load-check

Writes <out>/quiet and <out>/loaded (each a whole results folder), prints one line per parity row
present in both (as published, paired) and exits 1 when a row fails the check.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

from dlm_bench.analysis.data import load_results
from dlm_bench.selection.pairs import published_parity_rows
from dlm_bench.analysis.summary import verdict


def burn(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


def run(config: str, out: Path, load_after_s: float | None, load_s: float, workers: int) -> None:
    cmd = [sys.executable, str(ROOT / "src" / "main.py"), "--config", config, "--output_dir", str(out / "raw"),
           "--figures_dir", str(out / "fig"), "--log_level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    burners = []
    if load_after_s is not None:
        try:
            proc.wait(timeout=load_after_s)
        except subprocess.TimeoutExpired:
            burners = [multiprocessing.Process(target=burn, args=(load_s,)) for _ in range(workers)]
            for b in burners:
                b.start()
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    for b in burners:
        b.terminate()


def _ci(row) -> str:
    return f"{row['speedup_factor']:.2f} [{row['speedup_factor_ci_low']:.2f}, {row['speedup_factor_ci_high']:.2f}]"


def compare(quiet: pd.DataFrame, loaded: pd.DataFrame) -> list[tuple[str, bool]]:
    """Per paired parity row present in both runs: a line, and whether it passes (the two CIs overlap,
    or the loaded run gives no verdict)."""
    out = []
    key = ["seq_len", "batch_size", "metric"]
    for _, q in quiet[quiet["paired"]].iterrows():
        match = loaded[(loaded[key] == q[key]).all(axis=1) & loaded["paired"]]
        if match.empty:
            continue
        r = match.iloc[0]
        overlap = r["speedup_factor_ci_low"] <= q["speedup_factor_ci_high"] and \
            q["speedup_factor_ci_low"] <= r["speedup_factor_ci_high"]
        flagged = verdict(r).startswith("no verdict")
        ok = bool(overlap or flagged)
        out.append((f"N={q['seq_len']} B={q['batch_size']} {q['metric']}: quiet {_ci(q)} ({verdict(q)}); loaded "
                    f"{_ci(r)} ({verdict(r)}) -> {'ok' if ok else 'FAILED'}: "
                    f"{'CIs overlap' if overlap else 'no overlap'}" + (", flagged: no verdict" if flagged else ""), ok))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/experiments_mini.yaml")
    p.add_argument("--out", type=Path, required=True, help="a folder for the two runs (must not exist)")
    p.add_argument("--load_after_s", type=float, default=20.0, help="start the load this long into the second run")
    p.add_argument("--load_s", type=float, default=600.0, help="how long the load lasts at most")
    p.add_argument("--workers", type=int, default=2, help="busy processes (one per core saturates a 2-core machine)")
    args = p.parse_args()
    if args.out.exists():
        print(f"--out: {args.out} exists; give a new folder", file=sys.stderr)
        return 2
    run(args.config, args.out / "quiet", None, 0.0, 0)
    run(args.config, args.out / "loaded", args.load_after_s, args.load_s, args.workers)
    quiet, loaded = (published_parity_rows(load_results(args.out / name / "raw").parity) for name in ("quiet", "loaded"))
    results = compare(quiet, loaded)
    for line, _ in results:
        print(line)
    failures = sum(not ok for _, ok in results)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

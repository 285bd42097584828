"""Validate the cost model on this CPU: measure its ceilings, time the validation grid, fit, predict.

    python scripts/validate_cost_model.py              # calibrate (once), run the cells (resumable), fit, report
    python scripts/validate_cost_model.py --fit_only   # table and figure again from the rows already there
    python scripts/validate_cost_model.py --fit_only --input <folder> --report <md> --figure <png>

Steps: (1) the CPU's fp32 matmul and read-bandwidth ceilings into `<output_dir>/calibration.json` (once
per machine; the harness's roofline reads them too); (2) `src/main.py run` on
`config/experiments_cost_validation.yaml` (every cell's L_e2e and its own peak RSS; finished cells
are skipped); (3) the fit on the models whose names end in `--fit` sizes, every cell predicted, and
the held-out sizes' errors: `results/cost_validation.md`, `<output_dir>/cost_fit.json` (the fit and the
data it came from) and `results/figures/cpu_cost_validation/cost_validation.png`.
Exit 2: a bad argument, or no rows to fit.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIG = ROOT / "config" / "experiments_cost_validation.yaml"


def model_widths(exp) -> tuple[int, ...]:
    """d_model of every architecture the validation grid times."""
    from dlm_bench.models.architecture import architecture_of_config

    return tuple(sorted({architecture_of_config(json.loads((ROOT / m.architecture).read_text())).d_model
                         for m in exp.models}))


def calibrate(folder: Path, widths: tuple[int, ...]) -> dict:
    """This machine's entry of `<folder>/calibration.json`, measured first if it has none; the matmul's rate by
    shape (rows x each model's width) added to it when it lacks one."""
    import torch

    from dlm_bench.measure.calibration import measure_ceilings, measure_matmul_by_shape, write_calibration
    from dlm_bench.measure.environment import hardware_name

    path = folder / "calibration.json"
    hardware = hardware_name(torch.device("cpu"))
    table = json.loads(path.read_text()) if path.is_file() else {}
    torch.set_num_threads(2)
    if hardware not in table:
        print(f"[validate] measuring the fp32 matmul and bandwidth ceilings of {hardware}", flush=True)
        entry = measure_ceilings(torch.device("cpu"), matmul_size=2048, copy_mib=512, repeats=10,
                                 dtype=torch.float32)
        entry["threads"] = torch.get_num_threads()
        table[hardware] = entry
    entry = table[hardware]
    if "matmul_tflops_by_shape" not in entry:
        print(f"[validate] measuring the fp32 matmul's rate by shape on {hardware}", flush=True)
        entry["matmul_tflops_by_shape"] = measure_matmul_by_shape(torch.device("cpu"), widths, dtype=torch.float32)
    write_calibration(path, entry)
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", nargs="+", default=["3m", "100m"], help="model-name suffixes of the sizes to fit on "
                                                                    "(the others are held out)")
    p.add_argument("--fit_only", action="store_true", help="skip calibration and the run: fit and report only")
    p.add_argument("--report", type=Path, default=ROOT / "results" / "cost_validation.md")
    p.add_argument("--input", type=Path, default=None, help="with --fit_only: the results folder to fit (default: "
                                                            "the config's output_dir)")
    p.add_argument("--figure", type=Path, default=None, help="the figure's path (default: cost_validation.png in "
                                                             "the config's figures_dir)")
    args = p.parse_args(argv)

    from dlm_bench.config import load_experiment

    exp = load_experiment(CONFIG)
    folder = exp.results_dir
    if args.input is not None:
        if not args.fit_only:
            print("argument error: --input: only with --fit_only (a run writes to the config's output_dir)",
                  file=sys.stderr)
            return 2
        folder = args.input
    names = [m.name for m in exp.models]
    unknown = [s for s in args.fit if not any(n.endswith(f"-{s}") for n in names)]
    if unknown:
        print(f"argument error: --fit {' '.join(unknown)}: no model of {CONFIG.name} ends so; allowed: "
              f"{', '.join(sorted({n.split('-')[-1] for n in names}))}", file=sys.stderr)
        return 2
    if not args.fit_only:
        calibrate(folder, model_widths(exp))
        from dlm_bench.cli import main as harness

        code = harness(["run", "--config", str(CONFIG), "--no_figure"])
        if code:
            return code

    import pandas as pd

    from dlm_bench.analysis.cost_model import Ceilings
    from dlm_bench.analysis.cost_validation import check, draw_validation, fit, measured_cells, report_markdown, summarise
    from dlm_bench.fileio import atomic_write_text

    csv_path = folder / "raw_metrics.csv"
    if not csv_path.is_file() or not (folder / "calibration.json").is_file():
        print(f"no rows or no calibration in {folder}: run without --fit_only first", file=sys.stderr)
        return 2
    rows = pd.read_csv(csv_path, dtype={"cell_id": str})
    hardware = str(rows["hardware"].iloc[0])
    entry = json.loads((folder / "calibration.json").read_text())[hardware]
    ceilings = Ceilings.from_calibration(hardware, entry, f"measured: {folder.name}/calibration.json")
    cells = measured_cells(rows, ROOT)
    fitted = fit([c for c in cells if any(c.model.endswith(f"-{s}") for s in args.fit)], ceilings)
    checked = check(cells, fitted)
    summary = summarise(checked)
    atomic_write_text(args.report, report_markdown(fitted, checked, summary, hardware))
    figure = draw_validation(checked, args.figure or exp.figure_dir / "cost_validation.png", hardware)
    data = {"fit": fitted.to_json(), "summary": asdict(summary), "calibration": entry,
            "cells": [{"cell_id": c.cell.cell_id, "model": c.cell.model, "path": c.cell.generation.path_key,
                       "batch_size": c.cell.generation.batch, "seq_len": c.cell.generation.prompt_len
                       + c.cell.generation.n_out, "held_out": c.held_out, "measured_ms": c.cell.latency_ms,
                       "predicted_ms": c.predicted_ms, "measured_rss_gib": c.cell.peak_rss_gib,
                       "predicted_rss_gib": c.predicted_rss_gib} for c in checked]}
    atomic_write_text(folder / "cost_fit.json", json.dumps(data, indent=1) + "\n")
    print(f"held out: median |error| {100 * summary.latency_median_abs_error:.1f}%, worst "
          f"{100 * summary.latency_worst_abs_error:.1f}% ({summary.worst_cell}); peak RSS median "
          f"{100 * summary.rss_median_abs_error:.1f}%\n{args.report}\n{figure}\n{folder / 'cost_fit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

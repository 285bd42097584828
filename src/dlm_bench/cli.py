"""dlm-bench command line: run a grid (or a shard of it), score quality, merge results, draw figures.

    dlm-bench --config config/experiments_mini.yaml                   # run (default command)
    python src/main.py --config config/experiments.yaml --steps 64 --batch_size 1 8   # the same, no install
    dlm-bench score --config config/experiments.yaml                  # quality pass over saved generations
    dlm-bench tasks --config config/experiments_tasks_cpu.yaml        # task accuracy (HumanEval, GSM8K) per cell
    dlm-bench serve --config config/experiments_tasks_cpu.yaml --model austen-mdm --steps 16   # /v1/completions
    dlm-bench merge --config config/experiments.yaml                  # rebuild the tables + figures only
    dlm-bench perf --config config/perf/austen.yaml                   # the perf log (perf | gate | render)
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from typing import Optional

from .config import OVERRIDES, ConfigError, expand_cells, load_experiment, parse_shard, select_shard
from .preflight import OutputError, check_output, check_result_files
from .results import ArchiveError, ResultFileError, ShrinkError

log = logging.getLogger("dlm_bench")

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlm-bench", description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", default="run", choices=["run", "score", "tasks", "pairs", "merge", "finalize"],
                   help="run: time the grid, then score (when the config asks for quality), answer the tasks (when it "
                        "has any) and time the pairs; score: quality pass only; tasks: answer and check the config's "
                        "tasks (HumanEval, GSM8K) with every finished quality cell; pairs: time the published ratios "
                        "as interleaved pairs only; merge: pack the records, rebuild the tables and figures from "
                        "them; finalize: merge, score, tasks, pairs (the end of a SLURM sweep); perf | gate | render: "
                        "the performance log (`dlm-bench perf --help`); serve: an OpenAI-compatible endpoint over one "
                        "generation path (`dlm-bench serve --help`)")
    p.add_argument("--config", required=True, help="experiment YAML file")
    for o in OVERRIDES:
        if o.switch:
            p.add_argument(f"--{o.name}", action="store_true", default=None, help=o.help)
        else:
            p.add_argument(f"--{o.name}", type=o.type or str, nargs="+" if o.many else None, help=o.help)
    p.add_argument("--shard", help="run cells i mod n only, as 'i/n' (default: SLURM array task, else 0/1)")
    p.add_argument("--time_budget_s", type=float, help="start no new cell after this many seconds (resume later)")
    p.add_argument("--dry_run", action="store_true", help="print the expanded grid and cell count; load nothing")
    p.add_argument("--no_figure", action="store_true", help="skip the figures at the end")
    p.add_argument("--no_score", action="store_true", help="run: skip the quality pass (SLURM shards leave it to "
                                                             "the finalize job)")
    p.add_argument("--no_pairs", action="store_true", help="run / finalize: skip the pairs step (a shard of an "
                                                             "array always leaves it to the finalize job)")
    p.add_argument("--remeasure_contended", action="store_true",
                   help="run / pairs / finalize: measure again the cells and pairs marked contended (timed while "
                        "other work used the machine; load_guard in the config)")
    p.add_argument("--remeasure", action="store_true",
                   help="run / pairs / finalize: measure every cell and pair of the grid again, replacing their records "
                        "(a study re-measured at one commit); texts the judge has scored before keep their scores")
    p.add_argument("--allow_shrink", action="store_true",
                   help="rebuild raw_metrics.csv and pairs.csv from the records there even where rows lose their "
                        "record (without it such a merge stops with exit 2 and writes nothing)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def overrides_from(args: argparse.Namespace) -> dict:
    """The override mapping of parsed arguments (None = not given)."""
    return {o.name: getattr(args, o.name) for o in OVERRIDES}


def dry_run(exp, shard) -> int:
    """Print the shard's cells; a closed pipe (`--dry_run | head`) ends it quietly."""
    cells = select_shard(expand_cells(exp), shard)
    try:
        print(f"experiment {exp.name}: {len(cells)} cells (shard {shard[0]}/{shard[1]})")
        for cell in cells:
            print(f"  {cell.describe()}  P={cell.prompt_len} N_out={cell.n_out} {cell.precision} {cell.attention_backend}")
        print(f"{len(cells)} cells", flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
    return 0


def check_tables(exp, command: str, shard) -> None:
    """Before any work: the output folder's merges must not drop rows (ShrinkError, exit 2). A `run` may
    leave out rows of its own grid's cells: it measures them again."""
    from .measure.environment import hardware_name, resolve_device
    from .results import PairStore, ResultStore

    root = exp.results_dir
    exempt: frozenset[str] = frozenset()
    if command == "run":
        hardware = hardware_name(resolve_device(exp.device))
        exempt = frozenset(c.cell_id(hardware) for c in select_shard(expand_cells(exp), shard))
    for problem in (ResultStore(root).shrink_problem(exempt=exempt), PairStore(root).shrink_problem()):
        if problem:
            raise ShrinkError(problem)


PERF_COMMANDS = ("perf", "gate", "render")  # the performance log's commands (perf/cli.py)


class Terminated(BaseException):
    """SIGTERM arrived (scancel, a job's time limit, kill): the run stops where it is (a BaseException, as
    KeyboardInterrupt is, so no handler of a cell's errors records it as one)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """The command line; Ctrl-C and SIGTERM end with one line (finished cells are on disk, a re-run resumes)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PERF_COMMANDS:
        from .perf.cli import main as perf_main

        return perf_main(argv)
    if argv and argv[0] == "serve":
        from .serve import main as serve_main

        return serve_main(argv[1:])
    main_thread = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted: every finished cell is kept; run the same command again to resume", file=sys.stderr)
        return 130
    except Terminated:
        print(f"terminated (SIGTERM): {_finished(argv)}; run the same command again to resume", file=sys.stderr)
        return 143
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _finished(argv: list[str]) -> str:
    """What a stopped run leaves: the finished cell and pair records in its results folder."""
    try:
        args = build_parser().parse_args(argv)
        exp = load_experiment(args.config, overrides_from(args))
        from .results import PairStore, ResultStore

        cells, pairs = ResultStore(exp.results_dir), PairStore(exp.results_dir)
        done = sum(r.status in ("ok", "oom") for r in cells.records())
        measured = sum(r.status == "ok" for r in pairs.records())
        return f"{done} finished cells and {measured} measured pairs are kept in {exp.results_dir}"
    except BaseException:  # the config changed meanwhile, or a file is damaged: say less
        return "every finished cell and pair is kept"


def _main(argv: list[str] | None) -> int:
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(flag, "1")  # runs read local caches only; scripts/download_assets.py fetches
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = overrides_from(args)
    if args.command == "score":
        overrides["compute_bertscore"] = True
    try:
        exp = load_experiment(args.config, overrides)
        shard = parse_shard(args.shard)
        if args.time_budget_s is not None and not (math.isfinite(args.time_budget_s) and args.time_budget_s >= 0):
            raise ConfigError(f"--time_budget_s: {args.time_budget_s} is not allowed; allowed: seconds >= 0")
        if args.dry_run:
            return dry_run(exp, shard)
        wants_quality = bool(exp.quality.compute_bertscore or exp.quality.judge_path or exp.quality.judge_hub_id)
        scoring = args.command == "score" or (args.command in ("run", "finalize") and wants_quality
                                              and not args.no_score)
        after_cells = args.command == "finalize" or (args.command == "run" and shard[1] == 1)  # not in a shard
        pairing = bool(exp.pairs.measure) and (args.command == "pairs" or (after_cells and not args.no_pairs))
        answering = bool(exp.tasks) and (args.command == "tasks" or (args.command in ("run", "finalize")
                                                                      and after_cells and not args.no_score))
        if args.command in ("run", "score", "tasks", "pairs", "finalize"):
            from .assets import missing_assets
            from .measure.environment import resolve_device

            resolve_device(exp.device)
            problem = missing_assets(exp, scoring, args.config)
            if problem:
                raise ConfigError(problem)
            if args.command == "run" and exp.engines.uses_llamacpp:
                from .engines.llamacpp.build import build_tools_missing

                problem = build_tools_missing(exp.engines.llamacpp.cache_dir)
                if problem:
                    raise ConfigError(f"engines.engine: {problem}")
        tasks = None  # the configured tasks' problems, read before any model loads (the task pass uses them)
        if answering:
            from .tasks import TaskFileError, load_tasks

            try:
                tasks = load_tasks(exp)
            except TaskFileError as exc:
                raise ConfigError(str(exc)) from None
        check_result_files(exp.results_dir)
        if not args.allow_shrink:
            check_tables(exp, args.command, shard)
        check_output(exp, len(select_shard(expand_cells(exp), shard)))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OutputError as exc:
        print(f"output error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (ShrinkError, ArchiveError, ResultFileError) as exc:
        print(f"results error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _work(args, exp, shard, scoring, pairing, tasks)
    except (ShrinkError, ArchiveError, ResultFileError) as exc:  # a merge inside the work (files changed meanwhile)
        print(f"results error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _work(args: argparse.Namespace, exp, shard, scoring: bool, pairing: bool, tasks: Optional[dict]) -> int:
    """The command's work, after every check has passed (`--allow_shrink`: the shrinking merges first); `tasks`:
    the loaded tasks when the command answers them (tasks.load_tasks), else None."""
    from .workload.prompts import PromptSourceError
    from .results import PairStore, ResultStore
    from .sweep.runner import AttentionBackendError, run_experiment

    cells, pairs = ResultStore(exp.results_dir), PairStore(exp.results_dir)
    if args.allow_shrink:
        cells.merge(allow_shrink=True)
        pairs.merge(allow_shrink=True)
    errors = 0
    redo_before = datetime.now(timezone.utc).isoformat(timespec="seconds") if args.remeasure else None
    if args.remeasure and scoring:
        from .quality.scoring import keep_judge_scores

        keep_judge_scores(exp)  # before any record is replaced: the judge cache holds every scored text
    if args.command == "run":
        try:
            summary = run_experiment(exp, shard, time_budget_s=args.time_budget_s,
                                     remeasure_contended=args.remeasure_contended, redo_before=redo_before)
        except PromptSourceError as exc:
            print(f"prompt error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except AttentionBackendError as exc:
            print(f"attention error: {exc}", file=sys.stderr)
            return 1
        errors = summary.errors
        log.info("done: %d cells in this shard: %d ok, %d oom, %d errors, %d skipped as finished, %d left for a later "
                 "run; results in %s", summary.cells_in_shard, summary.ok, summary.oom, summary.errors, summary.skipped,
                 summary.out_of_time, summary.csv_path)
    if args.command in ("merge", "finalize"):
        cells.merge()
        pairs.merge()
    if scoring:
        from .measure.environment import resolve_device
        from .quality.scoring import score_experiment

        score_experiment(exp, resolve_device(exp.device))
        if exp.grid.parity_resolution and args.command in ("run", "finalize") and shard[1] == 1:
            errors += refine_parity(exp, redo_before)
    if tasks is not None:
        from .measure.environment import resolve_device
        from .tasks.scoring import score_tasks

        score_tasks(exp, resolve_device(exp.device), tasks=tasks)
    if pairing:
        from .sweep.pairs import describe, run_pairs

        measured = run_pairs(exp, remeasure_contended=args.remeasure_contended, redo_before=redo_before)
        log.info(describe(measured))
        errors += measured.failed
    if not args.no_figure and not draw_figures(exp):
        return 1
    return 1 if errors else 0


def refine_parity(exp, redo_before) -> int:
    """Bisect K around every published S_parity (grid.parity_resolution): measure and score the cells the
    refinement asks for until it asks for none; returns the cells that failed."""
    from .measure.environment import resolve_device
    from .quality.scoring import score_experiment
    from .sweep.runner import refined_steps, run_experiment

    errors, asked = 0, None
    while True:
        extra = refined_steps(exp)
        if extra == asked:  # nothing new since the last round
            return errors
        log.info("parity refinement: %s", "; ".join(f"{m} N={n} {s}/{c}: K {sorted(ks)}"
                                                      for (m, n, s, c, _), ks in sorted(extra.items())))
        summary = run_experiment(exp, extra_steps=extra, redo_before=redo_before)
        errors += summary.errors
        score_experiment(exp, resolve_device(exp.device))
        asked = extra


def draw_figures(exp) -> bool:
    """Figures and summary.md from the merged results (the analysis reads files only); False, after one line
    on stderr saying why, when they could not be drawn."""
    from .analysis.data import MixedRowsError
    from .analysis.report import analyze

    try:
        out = analyze(exp.results_dir, exp.figure_dir, resamples=exp.quality.bootstrap_resamples,
                      quantized_best=exp.pairs.quantized_best, see_also=tuple(exp.resolve(p) for p in exp.see_also),
                      margins=exp.quality.parity_margin)
    except (MixedRowsError, ValueError, FileNotFoundError) as exc:
        print(f"no figures and no summary drawn for {exp.results_dir}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return False
    log.info("figures and summary: %s", ", ".join(str(p) for p in out.values()))
    return True


if __name__ == "__main__":
    sys.exit(main())

"""Submit a grid to SLURM: an array of shard tasks sized from the config, a finalize job, then the pairs job
(the published ratios timed as interleaved pairs, on a node like the shards').

    python scripts/submit.py --config config/experiments.yaml --partition gpu -- --steps 64 --batch_size 4
    python scripts/submit.py --config config/experiments_mini.yaml --cpu          # CPU partition
    python scripts/submit.py --config ... --dry_run                               # print the sbatch lines

Arguments after `--` are passed to every task's `src/main.py` (the same overrides as by hand).
Resubmitting the same command later resumes: finished cells are skipped.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from dlm_bench.config import ConfigError, expand_cells, load_experiment
from dlm_bench.cli import build_parser, overrides_from


def array_size(config: str, passthrough: list[str], max_tasks: int) -> tuple[int, int]:
    """(number of cells, number of array tasks) for a config plus CLI overrides."""
    args = build_parser().parse_args(["--config", config, *passthrough])
    exp = load_experiment(config, overrides_from(args))
    cells = len(expand_cells(exp))
    return cells, max(1, min(cells, max_tasks))


def sbatch(cmd: list[str]) -> str:
    """Submit; returns the job id (raises CalledProcessError with sbatch's own message)."""
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().split(";")[0]


def main() -> int:
    argv = sys.argv[1:]
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--cpu", action="store_true", help="use jobs/benchmark_cpu.sbatch (no GPU)")
    p.add_argument("--partition", help="SLURM partition for every job")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--max_tasks", type=int, default=8, help="at most this many array tasks (default 8)")
    p.add_argument("--throttle", type=int, help="run at most this many tasks at once (%%N)")
    p.add_argument("--time", help="time limit per task, e.g. 04:00:00")
    p.add_argument("--score", action="store_true", help="run the quality pass in the finalize job")
    p.add_argument("--no_finalize", action="store_true", help="submit the array only")
    p.add_argument("--no_pairs", action="store_true", help="submit no pairs job after the finalize job")
    p.add_argument("--dry_run", action="store_true", help="print the sbatch commands, submit nothing")
    args = p.parse_args(own)
    try:
        cells, tasks = array_size(args.config, passthrough, args.max_tasks)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    common = ["--parsable", f"--chdir={ROOT}",
              f"--export=ALL,DLM_CONFIG={args.config},DLM_REPO={ROOT},DLM_SCORE={int(args.score)}"]
    if args.partition:
        common.append(f"--partition={args.partition}")
    if args.account:
        common.append(f"--account={args.account}")
    array = f"--array=0-{tasks - 1}" + (f"%{args.throttle}" if args.throttle else "")
    script = ROOT / "jobs" / ("benchmark_cpu.sbatch" if args.cpu else "benchmark_gpu.sbatch")
    shard_cmd = ["sbatch", *common, array, *([f"--time={args.time}"] if args.time else []), str(script), *passthrough]

    def pairs_cmd(after: str) -> list[str]:
        """The pairs job: the shards' script (same node kind) with DLM_COMMAND=pairs, after the finalize job."""
        export = next(c for c in common if c.startswith("--export=")) + ",DLM_COMMAND=pairs"
        return ["sbatch", *[c for c in common if not c.startswith("--export=")], export, "--job-name=dlm-bench-pairs",
                f"--dependency=afterok:{after}", *([f"--time={args.time}"] if args.time else []), str(script),
                *passthrough]
    print(f"{cells} cells in {tasks} array task(s)")
    (ROOT / "logs" / "slurm").mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        print(shlex.join(shard_cmd))
        if not args.no_finalize:
            print(shlex.join(["sbatch", *common, "--dependency=afterany:<array job id>",
                              str(ROOT / "jobs" / "finalize.sbatch"), *passthrough]))
            if not args.no_pairs:
                print(shlex.join(pairs_cmd("<finalize job id>")))
        return 0
    try:
        job = sbatch(shard_cmd)
    except subprocess.CalledProcessError as exc:
        print(f"sbatch failed (exit {exc.returncode}): {exc.stderr.strip() or exc.stdout.strip()}", file=sys.stderr)
        return 1
    print(f"array job {job}: {script.name} x {tasks}")
    if not args.no_finalize:
        try:
            fin = sbatch(["sbatch", *common, f"--dependency=afterany:{job}", str(ROOT / "jobs" / "finalize.sbatch"),
                          *passthrough])
        except subprocess.CalledProcessError as exc:
            print(f"array job {job} submitted, but sbatch failed for the finalize job (exit {exc.returncode}): "
                  f"{exc.stderr.strip() or exc.stdout.strip()}", file=sys.stderr)
            return 1
        print(f"finalize job {fin} (after {job})")
        if not args.no_pairs:
            try:
                pairs_job = sbatch(pairs_cmd(fin))
            except subprocess.CalledProcessError as exc:
                print(f"finalize job {fin} submitted, but sbatch failed for the pairs job (exit {exc.returncode}): "
                      f"{exc.stderr.strip() or exc.stdout.strip()}", file=sys.stderr)
                return 1
            print(f"pairs job {pairs_job} (after {fin})")
    print(f"logs: {ROOT / 'logs' / 'slurm'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

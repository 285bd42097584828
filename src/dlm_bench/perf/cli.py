"""The performance log and its gates: benchmark a fixed matrix, append it to the log, gate it.

    dlm-bench perf --config config/perf/austen.yaml             # appends to results/perf_log.md
    dlm-bench gate --config config/perf/austen.yaml             # exit 1 when a gate fails
    dlm-bench perf --config config/perf/ci.yaml --log /tmp/log.md --slow_path low_confidence/dual

`perf` runs the matrix of the config (every path paired against its architecture's baseline, see
`perf/matrix.py`), appends one JSON line to the log's twin (`.jsonl`), renders the Markdown log
from every line with the gates of `config/perf/*.yaml` as they stand, and prints each gate's verdict
(pass, fail or undecided). `gate` evaluates the gates on the log's latest entry of that config
(against the entry before it where a gate says `relative_to: previous`) and exits 1 if one fails, or
is undecided and counts as a fail, naming it and by how much. `render` rewrites the Markdown log
from its twin. Exit 2: a bad config or argument, before anything loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError, build_validated, project_root, read_yaml
from .log import append_entry, evaluate_entry, jsonl_path, read_entries, render
from .spec import PerfSpec

ROOT = project_root()


def load_spec(path: Path) -> PerfSpec:
    spec = build_validated(PerfSpec, read_yaml(path))
    for name in ("diffusion_model", "ar_model"):
        if not (ROOT / getattr(spec, name) / "config.json").is_file():
            raise ConfigError(f"{name}: {ROOT / getattr(spec, name)} is not a checkpoint (no config.json)")
    if spec.prompt_file is not None and not (ROOT / spec.prompt_file).is_file():
        raise ConfigError(f"prompt_file: {ROOT / spec.prompt_file} not found (scripts/prepare_austen.py writes "
                          f"data/austen/prompts.txt)")
    return spec


def gates_by_config(spec: PerfSpec) -> dict:
    """The gates of every perf config of the project by name, and those of `spec` (which may be elsewhere)."""
    known = {}
    for path in sorted((ROOT / "config" / "perf").glob("*.yaml")):
        other = build_validated(PerfSpec, read_yaml(path))
        known[other.name] = other.gates
    known[spec.name] = spec.gates
    return known


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dlm-bench", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["perf", "gate", "render"])
    p.add_argument("--config", type=Path, default=ROOT / "config" / "perf" / "austen.yaml")
    p.add_argument("--log", type=Path, default=ROOT / "results" / "perf_log.md", help="the Markdown log, rendered from its .jsonl twin (append-only)")
    p.add_argument("--slow_path", help="perf: stretch this path's timed region (test-only knob; the entry says so)")
    p.add_argument("--slow_factor", type=float, default=3.0, help="perf: how much longer the slowed path takes")
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.config)
        if args.slow_path is not None:
            if args.slow_path not in spec.diffusion_paths + spec.ar_paths:
                raise ConfigError(f"--slow_path: {args.slow_path!r} is not in the matrix; allowed: "
                                  f"{', '.join(spec.diffusion_paths[1:] + spec.ar_paths[1:])}")
            if args.slow_path in (spec.diffusion_paths[0], spec.ar_paths[0]):
                raise ConfigError(f"--slow_path: {args.slow_path!r} is a baseline; allowed: a path paired against one")
            if args.slow_factor <= 1.0:
                raise ConfigError(f"--slow_factor: {args.slow_factor} is not allowed; allowed: numbers > 1")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "render":
        render(args.log, gates_by_config(spec))
        print(f"rendered {args.log}")
        return 0
    if args.command == "perf":
        from .matrix import run_matrix

        entry = run_matrix(spec, ROOT, args.slow_path, args.slow_factor)
        append_entry(args.log, entry)
        render(args.log, gates_by_config(spec))
        print(f"appended to {jsonl_path(args.log)}; rendered {args.log}")
    entries = [e for e in read_entries(args.log) if e["config"] == spec.name]
    if not entries:
        print(f"{args.log}: no entry of config {spec.name!r}; run `perf` first", file=sys.stderr)
        return 2
    results = evaluate_entry(entries, entries[-1], spec.gates)
    for r in results:
        print(r.line())
    failed = [r for r in results if r.failed]
    if args.command == "gate" and failed:
        print(f"{len(failed)} of {len(results)} gates failed", file=sys.stderr)
        return 1
    return 0


"""The perf log: a JSON-lines file of measurements, append-only, and a Markdown rendering of it for people.

Each run appends one line to `<log>.jsonl` (opened for appending only: earlier lines are never
rewritten). `<log>.md` is rendered from every line, one dated section per run, with each entry's
gates evaluated as they stand now (pass, fail or undecided, see perf.gates): an old entry reads as
today's gates judge it, so the log never shows a verdict that the current rules would not give.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Optional

from ..fileio import atomic_write_text
from .gates import GateResult, evaluate
from .spec import GateSpec


def jsonl_path(log_md: Path) -> Path:
    """The machine-readable twin of a Markdown log: perf_log.md -> perf_log.jsonl."""
    return log_md.with_suffix(".jsonl")


def read_entries(log_md: Path) -> list[dict]:
    """Every entry of the log, oldest first ([] for no log)."""
    path = jsonl_path(log_md)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _f(value, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _delta(row: dict) -> str:
    """The row's quality delta with its CI, or — where it was not scored."""
    if row.get("quality_delta") is None:
        return "—"
    over = f" over {row['quality_delta_prompts']} prompts" if row.get("quality_delta_prompts") else ""
    return (f"{row['quality_delta']:+.4f} [{row['quality_delta_ci_low']:+.4f}, {row['quality_delta_ci_high']:+.4f}]"
            f"{over}")


def section(entry: dict, results: Optional[list[GateResult]]) -> str:
    """The Markdown section of one entry (`results` None: its config's gates are not known here)."""
    s = entry["settings"]
    threads = "" if entry["threads"] is None else f"; {entry['threads']} CPU threads"
    prompts = f"passages of `{s['prompt_file']}`" if s.get("prompt_file") else "random token ids"
    lines = [f"## {entry['measured_at']} · {entry['hardware']} · commit {entry['commit']}", "",
             f"Config `{entry['config']}`: diffusion `{s['diffusion_model']}`, AR `{s['ar_model']}`; prompt "
             f"{s['prompt_len']} tokens ({prompts}), {s['n_out']} generated, K = {s['steps']}, block {s['block_length']}; "
             f"{s['pairs']} interleaved pairs per path against its baseline (first path) after {s['warmup']} warm-up"
             f"{threads}. "
             f"Peak RSS {_f(entry['peak_rss_gib'], 2)} GiB.", "",
             "| path | B | tok/s | L_e2e ms | step p50 ms | step p99 ms | p99/p50 | steps | speedup vs baseline [95% CI] "
             "| tokens agreeing with baseline | BERTScore F1 − baseline's [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in entry["rows"]:
        speedup = "baseline" if r.get("baseline") else (
            f"{r['speedup']:.3f} [{r['speedup_ci_low']:.3f}, {r['speedup_ci_high']:.3f}]" + (" (slowed)" if r["slowed"] else ""))
        lines.append(f"| {r['path']} | {r['batch_size']} | {_f(r['tokens_per_s'])} | {_f(r['latency_ms'])} | "
                     f"{_f(r['step_ms_p50'], 2)} | {_f(r['step_ms_p99'], 2)} | {_f(r['step_p99_over_p50'], 2)} | "
                     f"{_f(r['steps_executed'], 0)} | {speedup} | {_f(r['agreement'], 3)} | {_delta(r)} |")
    if results is None:
        lines += ["", f"Gates: not evaluated (config {entry['config']!r} not found).", ""]
    else:
        lines += ["", "Gates:", ""] + [f"- {r.line()}" for r in results] + [""]
    return "\n".join(lines) + "\n"


HEADER = ("# Performance log\n\nOne section per run of `scripts/perf_ci.py perf`, rendered from `{jsonl}` (the "
          "measurements, one line per run, appended and never rewritten). Each entry's gates are evaluated as they "
          "stand now, with three outcomes: PASS (the whole CI on the good side of the bound), FAIL (the whole CI on the "
          "bad side) and UNDECIDED (the CI straddles it; each gate says what that counts as: quality gates, which "
          "claim non-inferiority, count it as a fail; speed gates on a shared CPU as a pass).\n\n")


def append_entry(log_md: Path, entry: dict) -> None:
    """Append the entry's JSON line to the log's twin (created if new)."""
    log_md.parent.mkdir(parents=True, exist_ok=True)
    with jsonl_path(log_md).open("a", encoding="utf-8") as js:
        js.write(json.dumps(entry) + "\n")


def evaluate_entry(entries: list[dict], entry: dict, gates: list[GateSpec]) -> list[GateResult]:
    """The gates on one entry of the log (against the entry before it where a gate says so)."""
    return evaluate(gates, entry, previous_entry(entries, entry))


def render(log_md: Path, gates_by_config: Mapping[str, list[GateSpec]]) -> None:
    """Write the Markdown log from every entry of its twin: each section with its config's gates, or a line
    saying they were not evaluated when its config is not among `gates_by_config`."""
    entries = read_entries(log_md)
    parts = [HEADER.format(jsonl=jsonl_path(log_md).name)]
    for entry in entries:
        gates = gates_by_config.get(entry["config"])
        parts.append(section(entry, None if gates is None else evaluate_entry(entries, entry, gates)))
    atomic_write_text(log_md, "".join(parts))


def previous_entry(entries: list[dict], latest: dict) -> Optional[dict]:
    """The entry before `latest` with the same config and hardware (what `relative_to: previous` reads)."""
    earlier = [e for e in entries if e is not latest and e["config"] == latest["config"]
               and e["hardware"] == latest["hardware"] and e["measured_at"] <= latest["measured_at"]]
    return earlier[-1] if earlier else None

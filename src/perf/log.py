"""The append-only perf log: a Markdown file for people and a JSON-lines file beside it for the gates.

Each run appends one dated section to `<log>.md` and one line to `<log>.jsonl`; earlier sections
and lines are never rewritten (the files are opened for appending only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from .gates import GateResult


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
    return f"{row['quality_delta']:+.4f} [{row['quality_delta_ci_low']:+.4f}, {row['quality_delta_ci_high']:+.4f}]"


def section(entry: dict, results: list[GateResult]) -> str:
    """The Markdown section of one entry."""
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
    lines += ["", "Gates:", ""] + [f"- {r.line()}" for r in results] + [""]
    return "\n".join(lines) + "\n"


def append_entry(log_md: Path, entry: dict, results: list[GateResult]) -> None:
    """Append the entry's section to the Markdown log and its JSON line to the twin (both created if new)."""
    log_md.parent.mkdir(parents=True, exist_ok=True)
    new = not log_md.is_file()
    with log_md.open("a", encoding="utf-8") as md:
        if new:
            md.write("# Performance log\n\nOne section per run of `scripts/perf_ci.py perf`, appended, never rewritten; "
                     "the gates of each run as evaluated then (`scripts/perf_ci.py gate` re-evaluates the latest).\n\n")
        md.write(section(entry, results))
    with jsonl_path(log_md).open("a", encoding="utf-8") as js:
        js.write(json.dumps(entry) + "\n")


def previous_entry(entries: list[dict], latest: dict) -> Optional[dict]:
    """The entry before `latest` with the same config and hardware (what `relative_to: previous` reads)."""
    earlier = [e for e in entries if e is not latest and e["config"] == latest["config"]
               and e["hardware"] == latest["hardware"] and e["measured_at"] <= latest["measured_at"]]
    return earlier[-1] if earlier else None

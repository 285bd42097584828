"""The numbers a reader quotes, generated from the committed results: the README's answer and the paper's
abstract, discussion and conclusion hold them between GENERATED markers, and `scripts/write_claims.py` writes
them (its `--check` fails when the text differs). Prose around them is written; the numbers are not.

Sources, each named where it is quoted: the trained study (`results/raw_data/cpu_austen_trained`, the answer per
N and AR decoding, both pairings), the perf log's latest entry (`results/perf_log.jsonl`, the fast paths, with
the machine it ran on), the cost model's validation (`results/raw_data/cpu_cost_validation/cost_fit.json`) and
the projection (`results/projection/projection.json`, K* as central estimates with their bands).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .data import Results
from .projection import INSIDE, NONE, UNDETERMINED, BreakEven
from .summary import answer_for_n

TRAINED = Path("results/raw_data/cpu_austen_trained")
PERF_LOG = Path("results/perf_log.jsonl")
COST_FIT = Path("results/raw_data/cpu_cost_validation/cost_fit.json")
PROJECTION = Path("results/projection/projection.json")
BEST = "both at their best"  # the projection's pairing of the fastest paths


@dataclass(frozen=True)
class Sources:
    """What the claims are computed from (read by `read_sources`)."""

    trained: Results
    trained_hardware: str
    perf_entry: dict
    cost_fit: dict
    projection: dict


def read_sources(root: Path, trained: Results) -> Sources:
    perf = [json.loads(line) for line in (root / PERF_LOG).read_text().splitlines() if line.strip()]
    hardware = ", ".join(sorted(trained.every_row["hardware"].dropna().astype(str).unique()))
    return Sources(trained, hardware, perf[-1], json.loads((root / COST_FIT).read_text()),
                   json.loads((root / PROJECTION).read_text()))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# --------------------------------------------------------------------------- measured


def measured_lines(s: Sources) -> list[str]:
    """The trained study's answer at B = 1, per N and AR decoding (the study summary's own lines)."""
    ns = sorted(s.trained.parity["seq_len"].unique())
    return [line for n in ns for line in answer_for_n(s.trained, int(n))]


def fast_path_lines(s: Sources) -> list[str]:
    """The perf log's latest entry: each fast path's speed against the as-published path and, where scored, its
    BERTScore difference (B = 8, its CI) against the 0.05 margin of the gates; the machine it ran on."""
    entry = s.perf_entry
    rows = {(r["path"], r["batch_size"]): r for r in entry["rows"]}
    out = []
    for path in ("low_confidence/prefix", "low_confidence/dual", "threshold/dual", "local_leap/dual"):
        fast, scored = rows.get((path, 1)), rows.get((path, 8))
        if fast is None or scored is None or scored.get("quality_delta") is None:
            continue
        keeps = scored["quality_delta_ci_low"] > -0.05
        out.append(f"{path}: {fast['speedup']:.2f} [{fast['speedup_ci_low']:.2f}, {fast['speedup_ci_high']:.2f}] "
                   f"times the reference sampler's speed at B = 1, BERTScore {scored['quality_delta']:+.3f} "
                   f"[{scored['quality_delta_ci_low']:+.3f}, {scored['quality_delta_ci_high']:+.3f}] "
                   + ("(keeps quality: inside the 0.05 margin)" if keeps else "(does not keep it)"))
    settings = entry["settings"]
    return out + [f"measured on {entry['hardware']}, {entry['threads']} threads, {entry['measured_at'][:10]} "
                  f"(commit {entry['commit'][:7]}; N = {settings['prompt_len'] + settings['n_out']}, "
                  f"K = {settings['steps']}, {settings['quality_prompts']} prompts; LocalLeap at anchor "
                  f"{settings['leap_threshold']}, relaxed {settings['leap_relaxed']}, window {settings['leap_window']})"]


# --------------------------------------------------------------------------- the cost model and the projection


def validation_line(s: Sources) -> str:
    """The cost model's held-out error on the CPU, overall and per path."""
    summary, held = s.cost_fit["summary"], [c for c in s.cost_fit["cells"] if c["held_out"]]
    by_path: dict[str, list[float]] = {}
    for c in held:
        by_path.setdefault(c["path"], []).append(abs(c["predicted_ms"] / c["measured_ms"] - 1))
    paths = "; ".join(f"{p} {_pct(statistics.median(e))}" for p, e in sorted(by_path.items()))
    return (f"held-out median L_e2e error {_pct(summary['latency_median_abs_error'])} over "
            f"{summary['held_out_cells']} cells (goal 15%; per path: {paths}; worst "
            f"{_pct(summary['latency_worst_abs_error'])}, {summary['worst_cell']})")


def _k_stars(s: Sources, batch: int, pairing: str = BEST) -> list[dict]:
    return [e for e in s.projection["break_even_steps"] if e["batch_size"] == batch and e["pairing"] == pairing]


def k_star_line(s: Sources, batch: int, seq_lens: Optional[tuple[int, ...]] = None) -> str:
    """K* / N_out of both sides at their best at one B over the devices (and the N given). Each projected K*
    is one of: none (even the favourable end of its band needs fewer than one step per block, so diffusion is
    slower at every K), undetermined (its band runs from under one step per block to over one step per token),
    or inside the grid, quoted as the range of the central estimates (raised to one step per block, marked
    "<" where one was below it) and the range the bands span."""
    entries = [e for e in _k_stars(s, batch) if seq_lens is None or e["seq_len"] in seq_lens]
    inside: list[tuple[float, float, float, bool]] = []
    undetermined = none = 0
    for e in entries:
        n_out = e["seq_len"] - e["seq_len"] // 2
        n_blocks = n_out // s.projection.get("block_length", 32)
        be = BreakEven(e["projected_low"], e["projected_high"], e["projected_central"])
        outcome = be.outcome(n_blocks, n_out)
        none += outcome == NONE
        undetermined += outcome == UNDETERMINED
        if outcome == INSIDE:
            inside.append((max(be.central, n_blocks) / n_out, max(be.low, n_blocks) / n_out, be.high / n_out,
                           be.central < n_blocks))
    where = ("every N" if seq_lens is None else f"N = {seq_lens[0]}" if len(seq_lens) == 1
             else f"N ≤ {max(seq_lens)}") + f", B = {batch}, A100 to H200"
    parts = []
    if inside:
        low_central = min(inside, key=lambda x: x[0])
        top = f"{max(x[0] for x in inside):.2f}"
        central = ("<" if low_central[3] else "") + f"{low_central[0]:.2f}"
        central += f"–{top}" if top != f"{low_central[0]:.2f}" else ""  # one value where all central estimates agree
        parts.append(f"K\\* = {central} N_out (central estimates of {len(inside)} of {len(entries)}, {where}), "
                     f"bands spanning {min(x[1] for x in inside):.2f}–{max(x[2] for x in inside):.2f} N_out")
    else:
        parts.append(f"K\\* has no estimate inside the grid ({where})")
    if undetermined:
        parts.append(f"{undetermined} of {len(entries)} undetermined (band from under one step per block to over "
                     "one step per token)")
    if none:
        parts.append(f"{none} of {len(entries)} none (diffusion projected slower even at one step per block)")
    return "; ".join(parts)


# --------------------------------------------------------------------------- the blocks


def readme_answer(s: Sources) -> str:
    """The README's "answer so far": what was measured, on which machine, and what is projected, with bands."""
    lines = [f"Measured on the trained 3.3 M-parameter pair (`{TRAINED.as_posix()}`, {s.trained_hardware}, "
             "B = 1; parity is the paired non-inferiority test, chosen on half the prompts and confirmed on the "
             "other half; each ratio's direction is a sign test over its pairs, its magnitude a CI):", ""]
    lines += measured_lines(s)
    fast = fast_path_lines(s)
    lines += ["", "Fast paths against LLaDA's reference sampler (the perf log, `results/perf_log.md`):", ""]
    lines += [f"- {line}" for line in fast[:-1]] + [f"- {fast[-1]}."]
    lines += ["", "**Projected** to LLaDA-8B against LLaMA-3-8B by the cost model (`docs-vibe/cost-model.md`; "
                  f"validated on the CPU: {validation_line(s)}):", "",
              f"- {k_star_line(s, 1, (512, 1024))};",
              f"- {k_star_line(s, 1, (2048,))};",
              f"- {k_star_line(s, 8)}.", "",
              "No GPU has measured any of it."]
    return "\n".join(lines)


def paper_claims(s: Sources) -> str:
    """The paper's abstract, discussion and conclusion sentences that carry numbers (one block, quoted there)."""
    return "\n".join([
        f"Measured (the trained pair, {s.trained_hardware}, B = 1):", "", *measured_lines(s), "",
        f"Projected (LLaDA-8B against LLaMA-3-8B, both at their best): {k_star_line(s, 1, (512, 1024))}; "
        f"{k_star_line(s, 1, (2048,))}; {k_star_line(s, 8)}. The cost model's CPU validation: "
        f"{validation_line(s)}."])

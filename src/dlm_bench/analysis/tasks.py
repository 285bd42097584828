"""Task accuracy of a results folder (task_outcomes.json): a table per cell and task, and per task the
summary's section: accuracy against K with tokens per forward for every path, S_parity on accuracy of every
diffusion path against every AR path (the per-problem outcomes paired, the same non-inferiority rule and
selection / confirmation split as every other parity metric), and AUP per diffusion path."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from ..labels import variant_label
from ..quality.parity import REACHED, s_parity_tested, split_passages
from ..registry import AR, DIFFUSION
from ..selection.parity_rule import NOT_TESTED
from ..stats import ALPHA, FAIL, PASS
from ..tasks.accuracy import AccuracyComparison, aup, compare
from ..tasks.outcomes import TASK_FILE, read_outcomes
from .markdown import fmt, table as md_table

COLUMNS = ("cell_id", "task", "metric", "model_name", "kind", "path", "steps", "seq_len", "gen_tokens", "problems",
           "accuracy", "accuracy_ci_low", "accuracy_ci_high", "tokens_per_forward", "prompts_truncated")


def task_table(outcomes: dict) -> pd.DataFrame:
    """One row per (cell, task): the cell's path, the accuracy with its CI, tokens per forward."""
    rows = []
    for cell_id, entry in sorted(outcomes.items()):
        identity = entry["identity"]
        for name, t in sorted(entry.get("tasks", {}).items()):
            rows.append({"cell_id": cell_id, "task": name, "metric": t["metric"],
                         "model_name": identity["model_name"], "kind": identity["kind"],
                         "path": variant_label(identity), "steps": identity.get("steps"),
                         "seq_len": identity["seq_len"], "gen_tokens": t["gen_tokens"], "problems": t["problems"],
                         "accuracy": t["accuracy"]["mean"], "accuracy_ci_low": t["accuracy"]["ci_low"],
                         "accuracy_ci_high": t["accuracy"]["ci_high"], "tokens_per_forward": t["tokens_per_forward"],
                         "prompts_truncated": sum(bool(r.get("prompt_truncated")) for r in t["per_problem"])})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def outcomes_of(outcomes: dict, cell_id: str, task: str) -> dict[str, bool]:
    """{problem id: correct} of one cell on one task."""
    entry = outcomes.get(cell_id, {}).get("tasks", {}).get(task, {})
    return {r["problem_id"]: bool(r["correct"]) for r in entry.get("per_problem", [])}


@dataclass(frozen=True)
class TaskParity:
    """One diffusion path against one AR path on a task: the smallest K not worse by more than the margin on the
    selection half of the problems (None when none is) with the outcome, that K's comparison on the
    confirmation half, and the comparison at the largest K over all problems (the direction test's numbers)."""

    s_parity: Optional[int]
    outcome: str
    confirmation: Optional[AccuracyComparison]
    at_largest_k: AccuracyComparison
    largest_k: int
    floor: bool  # the AR path solved no problem: parity says nothing


def task_parity(outcomes: dict, diffusion_cells: dict[int, str], ar_cell: str, task: str, margin: float,
                seed: int, resamples: int) -> TaskParity:
    """S_parity on accuracy of one diffusion path (cell id per K) against one AR cell."""
    ar = outcomes_of(outcomes, ar_cell, task)
    selection, confirmation = split_passages(list(ar), seed)
    tests = {k: compare(outcomes_of(outcomes, cell, task), ar, margin, selection, resamples).test
             for k, cell in sorted(diffusion_cells.items())}
    testable = {k: t for k, t in tests.items() if t.outcome is not None}
    k_star, outcome = s_parity_tested(testable) if testable else (None, NOT_TESTED)
    confirm = (compare(outcomes_of(outcomes, diffusion_cells[k_star], task), ar, margin, confirmation, resamples)
               if k_star is not None else None)
    largest = max(diffusion_cells)
    return TaskParity(k_star, outcome, confirm,
                      compare(outcomes_of(outcomes, diffusion_cells[largest], task), ar, margin, None, resamples),
                      largest, not any(ar.values()))


def _pct(x: Optional[float]) -> str:
    """A share (0-1) as a percentage with one decimal; an em dash when missing (NaN is written as null)."""
    return fmt(None if x is None else 100 * x)


def _direction(c: AccuracyComparison) -> str:
    if c.only_diffusion == c.only_ar == 0:
        return "no problem differs"
    lead = "diffusion" if c.only_diffusion > c.only_ar else "AR"
    return (f"only diffusion solved {c.only_diffusion}, only AR {c.only_ar} (exact p = {c.p_value:.2g}"
            + (f"; {lead} better)" if c.p_value < ALPHA else f"; no direction at {ALPHA:g})"))


def task_section(outcomes: dict, resamples: int) -> str:
    """The summary's task section (empty without outcomes)."""
    table = task_table(outcomes)
    if table.empty:
        return ""
    out = ["## Task accuracy\n",
           "Every quality cell answered each problem once (B = 1, its own path and K, the same number of answer "
           "tokens for every model), each answer cut at its first end-of-sequence token and at the task's stop "
           "sequences, then checked (HumanEval: the completion run against the problem's tests in the sandbox). "
           "Accuracy in % with its bootstrap 95% CI; tokens per forward = answer tokens / model forward calls run. "
           "S_parity on accuracy: the smallest K whose paired per-problem difference (diffusion - AR) has its CI "
           "above -margin on the selection half of the problems, confirmed on the other half; the direction is "
           "McNemar's exact test over the problems only one side solved.\n"]
    for task, rows in table.groupby("task", sort=True):
        first = outcomes[rows["cell_id"].iloc[0]]["tasks"][task]
        margin, seed = float(first["margin"]), int(first.get("seed", 0))
        y_max = 100 * rows["accuracy"].max()
        out.append(f"### {task} ({rows['metric'].iloc[0]}, {int(rows['problems'].max())} problems, "
                   f"{int(rows['gen_tokens'].iloc[0])} answer tokens)\n")
        lines = [[r.model_name, r.path, "—" if r.kind == AR else str(int(r.steps)),
                  f"{_pct(r.accuracy)} [{_pct(r.accuracy_ci_low)}, {_pct(r.accuracy_ci_high)}]",
                  f"{r.tokens_per_forward:.2f}", str(int(r.prompts_truncated))]
                 for r in rows.sort_values(["kind", "model_name", "path", "steps"]).itertuples()]
        out.append(md_table(["model", "path", "K", "accuracy %", "tokens / forward", "prompts cut to fit"], lines))
        diffusion = rows[rows["kind"] == DIFFUSION]
        ar_rows = rows[rows["kind"] == AR]
        paths: dict[tuple, dict[int, str]] = defaultdict(dict)
        for r in diffusion.itertuples():
            paths[(r.model_name, r.path)][int(r.steps)] = r.cell_id
        if paths and not ar_rows.empty:
            lines = []
            for (model, path), cells in sorted(paths.items()):
                for a in ar_rows.itertuples():
                    p = task_parity(outcomes, cells, a.cell_id, task, margin, seed, resamples)
                    conf = p.confirmation
                    confirmed = ("—" if conf is None or conf.test.outcome is None else
                                 {PASS: "confirmed", FAIL: "not confirmed"}.get(conf.test.outcome, "undecided"))
                    answer = (f"K = {p.s_parity}" if p.outcome == REACHED else p.outcome) + (
                        " (uninformative: the AR path solved none)" if p.floor else "")
                    d = p.at_largest_k.test.difference
                    lines.append([f"{model} {path}", f"{a.model_name} {a.path}", answer, confirmed,
                                  f"{_pct(d.value)} [{_pct(d.ci_low)}, {_pct(d.ci_high)}] at K = {p.largest_k}",
                                  _direction(p.at_largest_k)])
            out.append(f"\nS_parity on accuracy (margin {100 * margin:g} points):\n")
            out.append(md_table(["diffusion path", "AR path", "S_parity", "held-out half", "difference, points",
                                 "direction at that K"], lines))
        if paths:
            lines = []
            for (model, path), cells in sorted(paths.items()):
                sub = diffusion[(diffusion["model_name"] == model) & (diffusion["path"] == path)]
                score = aup(list(zip(sub["tokens_per_forward"], 100 * sub["accuracy"])), y_max)
                lines.append([f"{model} {path}", "— (no method solved a problem)" if y_max <= 0 else f"{score:.1f}"])
            out.append("\nAUP (accuracy under parallelism, Qian et al. 2026; y_max = the best accuracy of any cell "
                       f"here, {y_max:.1f}%):\n")
            out.append(md_table(["diffusion path", "AUP"], lines))
        out.append("")
    return "\n".join(out) + "\n"


def write_task_tables(input_dir: Path, resamples: int) -> Optional[str]:
    """task_metrics.csv of a folder with task outcomes, and the summary's section; None without outcomes."""
    outcomes = read_outcomes(Path(input_dir) / TASK_FILE)
    if not outcomes:
        return None
    from ..fileio import atomic_write_text

    atomic_write_text(Path(input_dir) / "task_metrics.csv", task_table(outcomes).to_csv(index=False))
    return task_section(outcomes, resamples)

"""The task pass: every finished torch quality cell answers every problem of every configured task (untimed,
B = 1, the cell's path and K, `gen_tokens` answer tokens for both models), each answer is cut at the task's
stop sequences and checked, and the per-problem outcomes go to task_outcomes.json. A problem's prompt is
encoded as each model's tokenizer encodes a document, with the BOS token where the tokenizer adds one (as
LLaMA-3's and LLaDA's do, and as lm-eval feeds them).

A prompt longer than the model's positions leave room for keeps its last tokens (the check still uses the
whole prompt) and the problem says so (`prompt_truncated`). A cell already answered under the same task
settings is not answered again, so a re-run resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch
from tqdm import tqdm

from ..registry import IN_PROCESS
from ..config import Cell, Experiment, TaskSpec, expand_cells
from ..fileio import atomic_write_text, jsonable
from ..generation import Generator
from ..generation.cell_generator import make_generator
from ..models.attention import kernel_context
from ..models.loader import LoadSettings, each_loaded, max_positions
from ..results import ResultStore
from .accuracy import accuracy, tokens_per_forward
from .outcomes import TASK_FILE, read_outcomes
from .task import Task
from . import load_tasks

log = logging.getLogger(__name__)


def settings_key(spec: TaskSpec) -> str:
    """What a cell's answers depend on besides the cell: the task's settings (a change answers it again)."""
    fields = {k: getattr(spec, k) for k in ("name", "file", "shots_file", "n_shot", "max_problems", "time_s",
                                           "memory_mb")}
    fields["gen_tokens"] = spec.answer_tokens
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def task_cells(exp: Experiment, store: ResultStore) -> list[tuple[Cell, Any]]:
    """(cell, record) of every finished torch cell the quality pass scores (the grid's smallest B)."""
    records = {r.cell_id: r for r in store.records() if r.status == "ok"}
    machines = sorted({r.hardware for r in records.values()})
    out = []
    for cell in expand_cells(exp):
        if cell.engine != IN_PROCESS or cell.settings.quality_batch_size is None:
            continue
        out.extend((cell, records[cell.cell_id(m)]) for m in machines if cell.cell_id(m) in records)
    return out


def until_eos(ids: list[int], eos: Optional[int]) -> list[int]:
    """The answer's token ids before its first end-of-sequence token (all of them without one)."""
    return ids[:ids.index(eos)] if eos is not None and eos in ids else ids


def answer(generator: Generator, task: Task, cell: Cell, n_out: int, tokenizer: Any, device: torch.device,
           max_positions: Optional[int], eos: Optional[int]) -> list[dict]:
    """Each problem answered once from the cell's seed: the answer's text (up to its first end-of-sequence token:
    both models generate all n_out tokens, and what follows an end of sequence is not part of the answer), its cut
    at the task's stop sequences, tokens generated and forwards run."""
    rows = []
    for problem in task.problems:
        ids = tokenizer(problem.prompt)["input_ids"]  # as the tokenizer encodes a document: its BOS where it adds one
        truncated = max_positions is not None and len(ids) + n_out > max_positions
        if truncated:
            ids = ids[len(ids) + n_out - max_positions:]
        torch.manual_seed(cell.settings.seed)
        trace = generator.generate(torch.tensor([ids], dtype=torch.long, device=device), n_out, steps=cell.steps)
        output = trace.output_ids[0].tolist()
        text = tokenizer.decode(until_eos(output, eos), skip_special_tokens=True)
        rows.append({"problem_id": problem.problem_id, "text": text, "answer": task.cut(text),
                     "tokens": n_out, "forwards": trace.forward_passes, "prompt_tokens": len(ids),
                     "prompt_truncated": truncated})
    return rows


def check(task: Task, rows: list[dict]) -> list[dict]:
    """Each answer checked (HumanEval: run in the sandbox); the outcome added to its row."""
    problems = {p.problem_id: p for p in task.problems}
    for row in rows:
        outcome = task.check(problems[row["problem_id"]], row["answer"])
        row["correct"], row["reason"] = outcome.correct, outcome.reason
    return rows


def entry_of(task: Task, spec: TaskSpec, cell: Cell, rows: list[dict], resamples: int) -> dict:
    acc = accuracy([r["correct"] for r in rows], resamples)
    return {"task": task.name, "metric": task.metric, "settings": settings_key(spec), "gen_tokens": spec.answer_tokens,
            "margin": spec.parity_margin, "seed": cell.settings.seed, "problems": len(rows),
            "accuracy": {"mean": acc.value, "ci_low": acc.ci_low, "ci_high": acc.ci_high},
            "tokens_per_forward": tokens_per_forward(sum(r["tokens"] for r in rows), sum(r["forwards"] for r in rows)),
            "per_problem": rows}


@dataclass
class TaskSummary:
    answered: int = 0  # (cell, task) pairs answered and checked by this pass
    already: int = 0  # answered before under the same settings


def score_tasks(exp: Experiment, device: torch.device, progress: bool = True,
                tasks: Optional[dict[str, tuple[TaskSpec, Task]]] = None) -> TaskSummary:
    """Answer and check every configured task for every finished quality cell that lacks it; write the outcomes
    file after each cell (a re-run resumes). `tasks`: the experiment's tasks already loaded (tasks.load_tasks),
    else they are read here."""
    summary = TaskSummary()
    if not exp.tasks:
        return summary
    store = ResultStore(exp.results_dir)
    path = store.root / TASK_FILE
    outcomes = read_outcomes(path)
    tasks = tasks if tasks is not None else load_tasks(exp)

    def missing(cell_id: str) -> list[str]:
        done = outcomes.get(cell_id, {}).get("tasks", {})
        return [n for n, (spec, _) in tasks.items() if done.get(n, {}).get("settings") != settings_key(spec)]

    cells = task_cells(exp, store)
    todo = [(c, r) for c, r in cells if missing(r.cell_id)]
    summary.already = len(cells) - len(todo)
    names = {c.model.name for c, _ in todo}
    settings = LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir)
    bar = tqdm(total=len(todo), desc="tasks", unit="cell", disable=not progress)
    for loaded in each_loaded((s for s in exp.models if s.name in names), device, settings):
        positions = max_positions(loaded.model)
        for cell, record in ((c, r) for c, r in todo if c.model.name == loaded.spec.name):
            bar.set_postfix_str(cell.describe())
            generator = make_generator(cell, loaded)
            entry = outcomes.setdefault(record.cell_id, {"identity": record.identity, "tasks": {}})
            for name in missing(record.cell_id):
                spec, task = tasks[name]
                with kernel_context(loaded.attention_kernel), torch.inference_mode():
                    rows = answer(generator, task, cell, spec.answer_tokens, loaded.tokenizer, loaded.device,
                                  positions, loaded.eos_token_id)
                entry["tasks"][name] = entry_of(task, spec, cell, check(task, rows),
                                                exp.quality.bootstrap_resamples)
                summary.answered += 1
            with store.file_lock(TASK_FILE):
                on_disk = read_outcomes(path)
                on_disk[record.cell_id] = entry
                atomic_write_text(path, json.dumps(jsonable(on_disk), indent=1))
                outcomes = on_disk
            bar.update(1)
    bar.close()
    log.info("tasks: %d (cell, task) answered and checked, %d cells done before: %s", summary.answered,
             summary.already, path)
    return summary

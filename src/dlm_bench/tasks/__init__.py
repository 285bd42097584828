"""Tasks as a quality source: problems, stop sequences and a checker per task (registry.TASKS names them),
the sandbox that runs model-written code, answers generated per cell (answers.py), their checking and the
per-problem outcomes (scoring.py), and accuracy, its paired comparison and AUP (accuracy.py)."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import TASKS
from .sandbox import Limits
from .task import Outcome, Problem, Task, TaskFileError, cut_at_stop

if TYPE_CHECKING:
    from ..config import TaskSpec

__all__ = ["load_task", "load_tasks", "Task", "Problem", "Outcome", "TaskFileError", "cut_at_stop"]


def load_task(spec: "TaskSpec", base_dir: str | Path, dataset_cache_dir: str | None = None) -> Task:
    """The task a config entry names, with its first `max_problems` problems (raises TaskFileError)."""
    from ..config import resolve_path

    module = importlib.import_module(f"{__name__}.{TASKS[spec.name].module}")
    file = resolve_path(spec.file, base_dir) if spec.file else None
    shots = resolve_path(spec.shots_file, base_dir) if spec.shots_file else None
    task = module.load(file, limits=Limits(spec.time_s, spec.memory_mb), n_shot=spec.n_shot, shots_file=shots,
                       cache_dir=dataset_cache_dir)
    if not task.problems:
        raise TaskFileError(f"tasks ({spec.name}): no problems in {file or 'the default source'}")
    if spec.max_problems is not None:
        task = dataclasses.replace(task, problems=task.problems[:spec.max_problems])
    return task


def load_tasks(exp) -> dict[str, tuple["TaskSpec", Task]]:
    """Every task of an experiment by name, with its config entry (raises TaskFileError)."""
    return {spec.name: (spec, load_task(spec, exp.base_dir, exp.prompts.dataset_cache_dir)) for spec in exp.tasks}

"""A task: problems with prompts, the stop sequences that end an answer, and a checker of one answer.

Both models answer every problem with the same number of generated tokens (the task's `gen_tokens`); each
answer is cut at the first stop sequence (`cut_at_stop`, the same rule for both sides) before it is checked.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Problem:
    """One problem: its id, the prompt text a model continues, and what its checker needs (`data`)."""

    problem_id: str
    prompt: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """One checked answer: correct or not, and why not ('' when correct)."""

    correct: bool
    reason: str = ""


Checker = Callable[[Problem, str], Outcome]


@dataclass(frozen=True)
class Task:
    """name: the task's registry name; metric: what its accuracy is (pass@1, exact match); problems in order;
    stop: the sequences that end an answer; check: (problem, cut answer) -> Outcome."""

    name: str
    metric: str
    problems: tuple[Problem, ...]
    stop: tuple[str, ...]
    check: Checker

    def cut(self, completion: str) -> str:
        return cut_at_stop(completion, self.stop)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop sequence; all of it when none occurs."""
    ends = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[:min(ends)] if ends else text


class TaskFileError(RuntimeError):
    """A task's problems cannot be read (missing package or dataset, malformed file): one line."""


def read_jsonl(path: Path, task: str, label: str, fields: Sequence[str]) -> list[dict]:
    """The objects of a task's JSONL file (gzip-compressed when its name ends in .gz), blank lines skipped, each
    holding the string `fields`; TaskFileError names the file, the line and what is wrong (`task`: the registry
    name, `label`: how its lines are called)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"tasks ({task}): cannot read {path}: {exc}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{path}:{n}: not valid JSON ({exc})") from None
        missing = [f for f in fields if not (isinstance(row, dict) and isinstance(row.get(f), str))]
        if missing:
            raise TaskFileError(f"{path}:{n}: missing string field(s) {', '.join(missing)}; a {label} line has "
                                f"{', '.join(fields)}")
        rows.append(row)
    return rows

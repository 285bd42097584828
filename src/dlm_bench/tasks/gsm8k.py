"""GSM8K (Cobbe et al., 2021): grade-school maths word problems; exact match of the final number.

Problems come from a JSONL file with `question` and `answer` per line (the dataset's format: the answer's
reasoning ends with `#### <number>`), or from the `openai/gsm8k` dataset (config `main`) in the local
`datasets` cache, which scripts/download_assets.py fills on a login node. The prompt of a test problem is
`n_shot` solved problems from the train split (its first ones, the same for every problem), then the
question:

    Question: <question>
    Answer: <reasoning> The answer is <number>.

An answer is cut at the next "Question:" and its last number is compared with the reference number (commas,
a leading $ and a trailing .0 removed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

from ..registry import TASKS
from .task import Outcome, Problem, Task, TaskFileError, read_jsonl

DATASET, CONFIG = TASKS["gsm8k"].dataset
STOP = ("\nQuestion:", "Question:", "\n\n\n")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def normalise(number: str) -> str:
    """A number as compared: no $, no thousands commas, no trailing zeros after a decimal point."""
    text = number.replace("$", "").replace(",", "").strip().rstrip(".")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or number


def final_number(text: str) -> Optional[str]:
    """The last number in `text`, normalised; None when there is none."""
    found = _NUMBER.findall(text)
    return normalise(found[-1]) if found else None


def reference_number(answer: str) -> str:
    """The number after the dataset answer's `####`."""
    if "####" not in answer:
        raise TaskFileError(f"a GSM8K answer without '####': {answer[:80]!r}")
    return normalise(answer.split("####")[-1])


def solved(question: str, answer: str) -> str:
    reasoning = answer.split("####")[0].strip()
    return f"Question: {question.strip()}\nAnswer: {reasoning} The answer is {reference_number(answer)}.\n\n"


def read_rows(path: Path) -> list[dict]:
    """The question / answer rows of a GSM8K-format JSONL file."""
    return read_jsonl(path, "gsm8k", "GSM8K", ("question", "answer"))


def read_dataset(split: str, cache_dir: Optional[str]) -> list[dict]:
    from datasets import load_dataset

    try:
        data = load_dataset(DATASET, CONFIG, split=split, cache_dir=cache_dir)
    except Exception as exc:  # datasets raises several types when offline or missing
        raise TaskFileError(f"tasks (gsm8k): cannot load {DATASET} ({CONFIG}, {split}) from the cache: "
                            f"{str(exc).splitlines()[0][:200]}. Download it with scripts/download_assets.py, "
                            f"or set tasks[].file") from None
    return [{"question": q, "answer": a} for q, a in zip(data["question"], data["answer"])]


def problems_of(test: Sequence[dict], shots: Sequence[dict], prefix: str) -> list[Problem]:
    context = "".join(solved(s["question"], s["answer"]) for s in shots)
    return [Problem(f"{prefix}{i}", f"{context}Question: {row['question'].strip()}\nAnswer:",
                    {"reference": reference_number(row["answer"])}) for i, row in enumerate(test)]


def check(problem: Problem, completion: str) -> Outcome:
    got = final_number(completion)
    if got == problem.data["reference"]:
        return Outcome(True)
    return Outcome(False, "no number" if got is None else f"{got} != {problem.data['reference']}")


def load(file: Optional[Path], n_shot: int = 0, shots_file: Optional[Path] = None,
         cache_dir: Optional[str] = None, **_) -> Task:
    """The test problems (a file, or the dataset's test split) with `n_shot` solved examples from `shots_file`
    (or the dataset's train split)."""
    test = read_rows(file) if file else read_dataset("test", cache_dir)
    shots: list[dict] = []
    if n_shot:
        pool = read_rows(shots_file) if shots_file else read_dataset("train", cache_dir)
        if len(pool) < n_shot:
            raise TaskFileError(f"tasks (gsm8k).n_shot: {n_shot} examples asked, the train file has {len(pool)}")
        shots = pool[:n_shot]
    return Task("gsm8k", "exact match", tuple(problems_of(test, shots, "gsm8k/")), STOP, check)

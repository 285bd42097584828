"""task_outcomes.json, the task pass's file in a results folder (torch-free: the analysis reads it)."""

from __future__ import annotations

import json
from pathlib import Path

from .task import TaskFileError

TASK_FILE = "task_outcomes.json"  # per cell and task, every problem's answer and outcome


def read_outcomes(path: Path) -> dict:
    """The file's content ({} when there is none yet); a damaged file raises TaskFileError."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TaskFileError(f"{path}: damaged ({exc}); delete it to answer the tasks again") from None

"""Performance targets measured by the benchmark scripts: one record per target, kept in a JSON file
that the scripts update and the summary's targets table reads.

A target is a paired ratio (median of per-pair ratios with its bootstrap 95% CI) or a share, with a
goal. Its verdict is `met` when the whole CI clears the goal, `missed` when the whole CI falls short,
and `undecided` when the CI straddles it: no verdict from noise.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..fileio import atomic_write_text
from ..stats import FAIL, PASS, verdict as interval_verdict


@dataclass(frozen=True)
class TargetResult:
    """One measured target. `goal` and the values are in the target's unit (a ratio, or a share 0..1)."""

    name: str  # what is compared, e.g. "compiled diffusion forward vs eager, low_confidence/dual"
    goal: float
    higher_is_better: bool
    value: float
    ci_low: Optional[float]  # None for a share measured without pairs
    ci_high: Optional[float]
    detail: str  # settings, arms' medians, tokens agreeing
    script: str  # the benchmark that measured it
    hardware: str
    measured_at: str  # UTC, ISO 8601
    commit: Optional[str]

    @property
    def goal_text(self) -> str:
        """The goal with its direction, e.g. '≥ 1.3' or '< 1.03'."""
        return f"{'≥' if self.higher_is_better else '<'} {self.goal:g}"

    @property
    def verdict(self) -> str:
        low = self.value if self.ci_low is None else self.ci_low
        high = self.value if self.ci_high is None else self.ci_high
        outcome = interval_verdict(low, high, self.goal, self.higher_is_better)
        return {PASS: "met", FAIL: "missed"}.get(outcome, "undecided (the CI straddles the goal)")


def record_targets(path: Path, results: list[TargetResult]) -> Path:
    """Write `results` into the JSON file at `path`, replacing earlier records of the same names."""
    table = {r["name"]: r for r in read_targets(path)}
    table.update({r.name: asdict(r) for r in results})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(list(table.values()), indent=1) + "\n")
    return path


def write_report(text: str, output: Optional[Path]) -> None:
    """A benchmark's Markdown report: into `output` (atomically) when given, else on stdout."""
    if output is None:
        print(text)
        return
    atomic_write_text(Path(output), text)
    print(f"written: {output}")


def read_targets(path: Path) -> list[dict]:
    """The records of a targets file ([] when there is none)."""
    return json.loads(path.read_text()) if path.is_file() else []


def target_from_dict(raw: dict) -> TargetResult:
    return TargetResult(**raw)


def add_benchmark_arguments(parser: argparse.ArgumentParser, model_dir: Path, pairs: int) -> None:
    """The options every CPU benchmark script shares: its random-weight model and the generation it times."""
    parser.add_argument("--model_dir", type=Path, default=model_dir,
                        help="where the random-weight checkpoints are written (reused when present)")
    parser.add_argument("--d_model", type=int, default=512)
    parser.add_argument("--n_layers", type=int, default=6)
    parser.add_argument("--prompt_length", type=int, default=128, help="tokens")
    parser.add_argument("--gen_length", type=int, default=128, help="tokens generated")
    parser.add_argument("--steps", type=int, default=32, help="diffusion steps K")
    parser.add_argument("--block_length", type=int, default=32, help="tokens")
    parser.add_argument("--pairs", type=int, default=pairs, help="interleaved pairs per comparison")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")

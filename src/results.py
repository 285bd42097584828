"""The row schema, per-cell JSON records and their merge into the CSV tables.

Every finished cell is one JSON file `cells/<cell_id>.json`, written atomically (temporary file +
rename), so concurrent array tasks never share a file and an interrupted run leaves only whole
records. `merge` rebuilds `raw_metrics.csv` and `environment.json` from those files; it is
idempotent and also writes atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

DONE_STATUSES = ("ok", "oom")  # an OOM is a result; an error is retried on the next run


@dataclass
class Repetition:
    """One measured generation. Times in ms, throughput in output tokens/s."""

    latency_ms: float
    tokens_per_s: float
    ttft_ms: Optional[float] = None
    itl_ms: Optional[float] = None
    step_ms_p50: Optional[float] = None
    step_ms_p99: Optional[float] = None
    steps_executed: Optional[int] = None


@dataclass
class CellRecord:
    """One grid cell's outcome. Summary fields are medians over the measured repetitions."""

    cell_id: str
    status: str  # ok | oom | error
    experiment: str
    model_name: str
    family: str
    kind: str  # autoregressive | diffusion
    model_source: str
    weights: str  # pretrained | synthetic
    batch_size: int
    seq_len: int
    prompt_len: int
    n_out: int
    steps: Optional[int]
    sampler: Optional[str]
    cache: Optional[str]
    decode: Optional[str]
    block_length: Optional[int]
    temperature: float
    cfg_scale: Optional[float]
    threshold: Optional[float]
    precision: str
    attention_backend: str
    schedule: Optional[str] = None  # diffusion: llada | dream
    eps: Optional[float] = None  # Dream schedule's final time
    threshold_steps: Optional[str] = None  # threshold sampler: cap | unbounded
    noise_layout: Optional[str] = None  # temperature > 0: block | canvas
    attention_kernel: Optional[str] = None
    clock: Optional[str] = None
    hardware: Optional[str] = None
    error: Optional[str] = None
    warmup: int = 0  # warm-up generations run
    warmup_steps: Optional[int] = None  # diffusion: denoising steps per warm-up; None = whole generations
    repeats: int = 0  # timed repetitions run
    latency_ms_median: float = math.nan
    latency_ms_min: float = math.nan
    latency_ms_max: float = math.nan
    latency_ms_cv: float = math.nan
    tokens_per_s_median: float = math.nan
    ttft_ms_median: float = math.nan
    itl_ms_median: float = math.nan
    step_ms_p50: float = math.nan
    step_ms_p99: float = math.nan
    steps_executed: Optional[int] = None
    forward_passes: Optional[int] = None
    forward_passes_per_token: float = math.nan
    peak_mem_reserved_gib: float = math.nan
    peak_mem_allocated_gib: float = math.nan
    process_max_rss_gib: float = math.nan
    answer_tokens_mean: float = math.nan  # output tokens before the first EOS, mean over the batch
    answer_tokens_per_s_median: float = math.nan  # B * answer_tokens_mean / L_e2e
    tokens_per_step_mean: float = math.nan
    agreement_with_uncached: float = math.nan  # cached samplers: share of tokens equal to the uncached sampler's
    flops_per_generation: float = math.nan
    min_bytes_per_generation: float = math.nan
    achieved_tflops: float = math.nan
    achieved_tbps: float = math.nan
    mfu: float = math.nan
    mbu: float = math.nan
    peak_tflops: float = math.nan
    peak_tbps: float = math.nan
    peak_source: Optional[str] = None
    n_params: Optional[int] = None
    n_params_non_embedding: Optional[int] = None
    prompt_source: Optional[str] = None
    passage_ids: list[str] = field(default_factory=list)
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    wall_s: float = math.nan
    environment: dict[str, Any] = field(default_factory=dict)
    repetitions: list[Repetition] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # token ids + decoded text of one generation
    extra_columns: dict[str, Any] = field(default_factory=dict)  # scalar columns added by later passes
    generations: list[dict[str, Any]] = field(default_factory=list)  # untimed, all prompts, for scoring

    def to_json(self) -> dict:
        return jsonable(dataclasses.asdict(self))


_NESTED = ("environment", "repetitions", "outputs", "passage_ids", "extra_columns", "generations")
CSV_COLUMNS = [f.name for f in dataclasses.fields(CellRecord) if f.name not in _NESTED] + ["latency_ms_all", "passage_ids"]


def jsonable(obj: Any) -> Any:
    """NaN -> None so the files are strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [jsonable(v) for v in obj]
    return obj


def csv_row(record: dict) -> dict[str, Any]:
    """A flat CSV row from a record mapping (environment keys become env_* columns)."""
    row = {k: record.get(k) for k in CSV_COLUMNS if k in record}
    row["latency_ms_all"] = ";".join(f"{r['latency_ms']:.4f}" for r in record.get("repetitions", []))
    row["passage_ids"] = ";".join(record.get("passage_ids", []))
    for key, value in sorted(record.get("environment", {}).items()):
        row[f"env_{key}"] = value
    for key, value in sorted(record.get("extra_columns", {}).items()):
        row[key] = value
    return row


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ResultStore:
    """Per-cell records under `<root>/cells/` and the merged tables in `<root>/`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def read(self, cell_id: str) -> Optional[dict]:
        try:
            return json.loads(self.path(cell_id).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def is_done(self, cell_id: str) -> bool:
        record = self.read(cell_id)
        return record is not None and record.get("status") in DONE_STATUSES

    def write(self, record: CellRecord | dict) -> Path:
        data = record.to_json() if isinstance(record, CellRecord) else jsonable(record)
        path = self.path(data["cell_id"])
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False))
        return path

    def records(self) -> list[dict]:
        """Every readable cell record, in a stable order."""
        out = []
        for p in sorted(self.cells_dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except json.JSONDecodeError:
                continue
        return sorted(out, key=_order)

    def merge(self) -> Path:
        """Rebuild raw_metrics.csv and environment.json from the cell files; returns the CSV path."""
        records = self.records()
        rows = [csv_row(r) for r in records]
        columns = list(CSV_COLUMNS)
        for row in rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        csv_path = self.root / "raw_metrics.csv"
        atomic_write_text(csv_path, buf.getvalue())
        environments = {}
        for r in records:
            env = r.get("environment") or {}
            key = json.dumps(env, sort_keys=True)
            environments.setdefault(key, {"environment": env, "cell_ids": []})["cell_ids"].append(r["cell_id"])
        atomic_write_text(self.root / "environment.json", json.dumps(list(environments.values()), indent=1))
        return csv_path


def _order(record: dict) -> tuple:
    return (record.get("model_name") or "", record.get("seq_len") or 0, record.get("batch_size") or 0,
            record.get("steps") or 0, record.get("sampler") or "", record.get("cache") or "",
            record.get("decode") or "", record.get("cell_id"))

"""The cell record and its files.

A `CellRecord` is built once per measured cell from typed parts (the cell's identity, timing
statistics of its repetitions, work, memory, roofline, answer tokens, quality); `to_row()` is the
only place it becomes flat CSV columns. Every finished cell is one JSON file `cells/<cell_id>.json`,
written atomically (temporary file + rename), so concurrent array tasks never share a file and an
interrupted run leaves only whole records.

`merge` packs every record (the archive's and the folder's; a file replaces the archived record of
the same id) into `cells.jsonl.xz`, the committed source of a study, and rebuilds `raw_metrics.csv`,
`per_prompt.csv` and `environment.json` from them. A fresh clone has the archive and no folder, so
its merge rebuilds the same tables. A merge never drops a row silently: when the records would
rebuild a table without some of the cell ids it holds, it raises `ShrinkError` (`allow_shrink` to
accept). Every file is written atomically; `merge.json` says how many records each table came from.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import logging
import lzma
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional, Sequence

from .fileio import atomic_write_bytes, atomic_write_text, jsonable
from .metrics import timing as metrics
from .metrics.quality import ESTIMATE_PARTS, QUALITY_METRICS
from .stats import Estimate

log = logging.getLogger(__name__)

DONE_STATUSES = ("ok", "oom")  # an OOM is a result; an error is retried on the next run
NAN = math.nan


@dataclass
class Repetition:
    """One measured generation. Times in ms, throughput in output tokens/s."""

    latency_ms: float
    tokens_per_s: float
    steps_executed: int = 0
    ttft_ms: float = NAN  # autoregressive only
    itl_ms: float = NAN  # autoregressive only
    step_ms_p50: float = NAN  # diffusion only
    step_ms_p99: float = NAN  # diffusion only


@dataclass(frozen=True)
class TimingStats:
    """Summary of the timed repetitions: medians (ms, tokens/s), spread, and how many ran."""

    repeats: int
    latency_ms_median: float
    latency_ms_min: float
    latency_ms_max: float
    latency_ms_cv: float
    tokens_per_s_median: float
    ttft_ms_median: float = NAN
    itl_ms_median: float = NAN
    step_ms_p50: float = NAN
    step_ms_p99: float = NAN

    @classmethod
    def from_repetitions(cls, reps: Sequence[Repetition]) -> "TimingStats":
        lat = [r.latency_ms for r in reps]

        def median_of(name: str) -> float:
            return metrics.median([getattr(r, name) for r in reps if not math.isnan(getattr(r, name))])

        return cls(repeats=len(reps), latency_ms_median=metrics.median(lat), latency_ms_min=min(lat),
                   latency_ms_max=max(lat), latency_ms_cv=metrics.coefficient_of_variation(lat),
                   tokens_per_s_median=metrics.median([r.tokens_per_s for r in reps]),
                   ttft_ms_median=median_of("ttft_ms"), itl_ms_median=median_of("itl_ms"),
                   step_ms_p50=median_of("step_ms_p50"), step_ms_p99=median_of("step_ms_p99"))


@dataclass(frozen=True)
class WorkStats:
    """What one generation did: decode iterations, model forward calls (a CFG step counts 2), per token."""

    steps_executed: int
    forward_passes: int
    forward_passes_per_token: float
    tokens_per_step_mean: float

    @classmethod
    def of(cls, steps_executed: int, forward_passes: int, n_out: int) -> "WorkStats":
        return cls(steps_executed, forward_passes, metrics.forward_passes_per_token(forward_passes, n_out),
                   n_out / steps_executed)


@dataclass(frozen=True)
class MemoryStats:
    """Peaks over the timed repetitions, GiB. GPU figures are NaN on the CPU; `process_max_rss_gib` is
    the process-lifetime maximum resident set size; `cell_peak_rss_gib` the resident set's peak over the
    timed repetitions alone (NaN where it cannot be reset, and in records from before it was kept)."""

    peak_mem_reserved_gib: float
    peak_mem_allocated_gib: float
    process_max_rss_gib: float
    cell_peak_rss_gib: float = NAN


@dataclass(frozen=True)
class RooflineStats:
    """Analytic FLOPs and minimum bytes of one generation, their rates at the median latency
    (TFLOP/s, TB/s) and the fractions of the peaks (MFU, MBU; NaN when the peaks are unknown)."""

    flops_per_generation: float
    min_bytes_per_generation: float
    achieved_tflops: float
    achieved_tbps: float
    mfu: float
    mbu: float
    peak_tflops: float
    peak_tbps: float
    peak_source: str


@dataclass(frozen=True)
class AnswerStats:
    """Output tokens before the first EOS (batch mean) and their rate B * that / L_e2e (tokens/s)."""

    answer_tokens_mean: float
    answer_tokens_per_s_median: float

    @classmethod
    def of(cls, output_ids: Sequence[Sequence[int]], eos_id: Optional[int], latency_ms: float) -> "AnswerStats":
        counts = metrics.answer_tokens(output_ids, eos_id)
        mean = sum(counts) / len(counts)
        return cls(mean, metrics.throughput_tokens_per_s(len(counts), mean, latency_ms))


QUIET = "quiet"  # LoadStats.contention of a measurement taken on a quiet machine


@dataclass(frozen=True)
class LoadStats:
    """The machine around a cell or pair (measure/load.py): 1-minute load average before and after, CPU time
    stolen by the hypervisor in between (%), other compute processes on the GPU (NaN when unknown), the CPU
    cores other processes used during the measurement and in the probe before it (NaN in records from before
    they were kept), the seconds waited for quiet, and `contention`: "quiet", what made the measurement
    contended, or "" where the load guard did not judge it (older records, or the guard switched off)."""

    load_1m_before: float
    load_1m_after: float
    cpu_steal_pct: float
    gpu_other_processes: float
    other_cpu_cores: float = NAN
    other_cpu_cores_before: float = NAN
    waited_for_quiet_s: float = NAN
    contention: str = ""

    @property
    def load_change(self) -> float:
        return abs(self.load_1m_after - self.load_1m_before)

    @property
    def contended(self) -> bool:
        return contended(self.contention)


def contended(contention) -> bool:
    """Whether a record's or row's `contention` marks it contended (judged, and not quiet)."""
    return isinstance(contention, str) and contention not in ("", QUIET)


@dataclass
class QualityResult:
    """A cell's scores (see metrics.quality): one estimate per metric over the prompt set."""

    label: str  # model quality, or a smoke test of the pipeline (synthetic weights)
    prompts: int
    bertscore_model: Optional[str]
    judge: Optional[str]
    estimates: dict[str, Estimate]

    def columns(self) -> dict[str, Any]:
        out: dict[str, Any] = {"quality_label": self.label, "quality_prompts": self.prompts,
                               "bertscore_model": self.bertscore_model, "judge": self.judge}
        for name in QUALITY_METRICS:
            est = self.estimates.get(name)
            for part, value in zip(ESTIMATE_PARTS, (est.value, est.ci_low, est.ci_high) if est else (NAN,) * 3):
                out[f"{name}_{part}"] = value
        return out


@dataclass(frozen=True)
class EngineStats:
    """Engines other than torch: what ran (version, build flags, threads), the engine's own timing of
    the last repetition's work (ms, mean over its answers), answers whose returned token count was not
    N_out (over every timed repetition), and the share of answer tokens agreeing with the torch path
    (mean over the per-prompt pass)."""

    engine_version: str
    engine_build: str
    engine_threads: float  # NaN when unknown (a remote server)
    engine_latency_ms: float
    answers_not_n_out: int
    agreement_with_torch: float
    per_prompt_speedup_median: float  # median over the prompts of their paired torch / engine ratios


TEXT_FIELDS = ("engine_version", "engine_build", "peak_source", "contention")  # strings: never read back as NaN

_PARTS = {"timing": TimingStats, "work": WorkStats, "memory": MemoryStats, "roofline": RooflineStats,
          "answers": AnswerStats, "load": LoadStats, "engine": EngineStats}


class _JsonRecord:
    """A record kept as one JSON object: its dataclass fields, NaN written as null."""

    def to_json(self) -> dict:
        return jsonable(dataclasses.asdict(self))


@dataclass
class CellRecord(_JsonRecord):
    """One grid cell's outcome. `identity` is `Cell.identity()`: the cell's grid columns."""

    cell_id: str
    identity: dict[str, Any]
    status: str  # ok | oom | error
    experiment: str
    weights: str  # pretrained | synthetic
    hardware: str
    settings: dict[str, Any]  # what else defines the measurement (`Cell.settings()`)
    environment: dict[str, Any] = field(default_factory=dict)
    attention_kernel: Optional[str] = None  # the row's label of it (a fallback says so; an engine's is n/a)
    clock: Optional[str] = None
    error: Optional[str] = None  # why the measurement failed (status oom / error)
    extras_error: Optional[str] = None  # why an untimed extra (agreement, quality generations) failed
    warmup: int = 0  # warm-up generations run
    warmup_steps: Optional[int] = None  # diffusion: denoising steps per warm-up; None = whole generations
    timing: Optional[TimingStats] = None
    work: Optional[WorkStats] = None
    memory: Optional[MemoryStats] = None
    roofline: Optional[RooflineStats] = None
    answers: Optional[AnswerStats] = None
    load: Optional[LoadStats] = None
    agreement_with_uncached: Optional[float] = None  # cached samplers: share of tokens equal to the uncached ones
    quality: Optional[QualityResult] = None
    n_params: Optional[int] = None
    n_params_non_embedding: Optional[int] = None
    prompt_source: Optional[str] = None
    passage_ids: list[str] = field(default_factory=list)
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    wall_s: float = NAN
    repetitions: list[Repetition] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # token ids + decoded text of one timed generation
    generations: list[dict[str, Any]] = field(default_factory=list)  # untimed, all prompts, for scoring
    engine: Optional[EngineStats] = None  # engines other than torch
    per_prompt: list[dict[str, Any]] = field(default_factory=list)  # engines: one entry per prompt
    restored_from: Optional[str] = None  # rebuilt from this table (src/dlm_bench/sweep/restore.py): no generations, no marks
    kernel: Optional[str] = None  # the attention kernel that ran (its id: sdpa_flash, sdpa, ...); None: an engine ran it

    def to_row(self) -> dict[str, Any]:
        """The one flattening into CSV columns (empty parts become NaN columns, so headers are stable)."""
        row: dict[str, Any] = {"cell_id": self.cell_id, "status": self.status, "experiment": self.experiment,
                               **self.identity, "weights": self.weights, "hardware": self.hardware,
                               "attention_kernel": self.attention_kernel, "kernel": self.kernel, "clock": self.clock,
                               "error": self.error,
                               "extras_error": self.extras_error, "warmup": self.warmup,
                               "warmup_steps": self.warmup_steps}
        for name, cls in _PARTS.items():
            part = getattr(self, name)
            for f in dataclasses.fields(cls):
                row[f.name] = getattr(part, f.name) if part is not None else (0 if f.name == "repeats" else NAN)
        row["agreement_with_uncached"] = self.agreement_with_uncached
        row.update((self.quality or QualityResult("", 0, None, None, {})).columns())
        row.update(n_params=self.n_params, n_params_non_embedding=self.n_params_non_embedding,
                   prompt_source=self.prompt_source, started_at=self.started_at, finished_at=self.finished_at,
                   wall_s=self.wall_s)
        row["latency_ms_all"] = ";".join(f"{r.latency_ms:.4f}" for r in self.repetitions)
        row["passage_ids"] = ";".join(self.passage_ids)
        row.update({f"setting_{k}": v for k, v in sorted(self.settings.items())})
        row.update({f"env_{k}": v for k, v in sorted(self.environment.items())})
        return row

    @classmethod
    def from_json(cls, data: dict) -> "CellRecord":
        kwargs = dict(data)
        for name, part_cls in _PARTS.items():
            if kwargs.get(name) is not None:
                kwargs[name] = part_cls(**{k: (NAN if v is None and k not in TEXT_FIELDS else v)
                                           for k, v in kwargs[name].items()})
        if kwargs.get("quality") is not None:
            q = dict(kwargs["quality"])
            q["estimates"] = {k: Estimate(*(NAN if x is None else x for x in (e["value"], e["ci_low"], e["ci_high"])))
                              for k, e in q["estimates"].items()}
            kwargs["quality"] = QualityResult(**q)
        kwargs["repetitions"] = [Repetition(**{k: NAN if v is None else v for k, v in r.items()})
                                 for r in kwargs.get("repetitions", [])]
        if kwargs.get("wall_s") is None:
            kwargs["wall_s"] = NAN
        if "kernel" not in kwargs:
            kwargs["kernel"] = kernel_of_legacy_label(kwargs.get("attention_kernel"))
        return cls(**kwargs)


def kernel_of_legacy_label(label: Any) -> Optional[str]:
    """The kernel a record written before the `kernel` field ran: its label was the kernel's id, or after a
    fallback the id that ran followed by the reason in brackets; None for an engine's "n/a" or no label."""
    if not isinstance(label, str) or not label or label.startswith("n/a"):
        return None
    return label.split(" ", 1)[0]


@dataclass
class PairRecord(_JsonRecord):
    """One paired measurement: after `warmup` untimed generations of each arm, `len(order)` pairs, each one
    timed generation of the reference arm and one of the contender, back to back in the order given
    ("RC" or "CR", drawn per pair); latencies in ms, in pair order."""

    pair_id: str
    kind: str  # speedup | fast_paths (config.PAIR_KINDS)
    status: str  # ok | oom | error
    experiment: str
    hardware: str
    reference_cell_id: str
    contender_cell_id: str
    reference: str  # the arms' cell labels
    contender: str
    seq_len: int
    batch_size: int
    warmup: int
    order: str = ""
    reference_ms: list[float] = field(default_factory=list)
    contender_ms: list[float] = field(default_factory=list)
    load: Optional[LoadStats] = None
    error: Optional[str] = None
    started_at: Optional[str] = None
    wall_s: float = NAN
    restored_from: Optional[str] = None  # rebuilt from this table (src/dlm_bench/sweep/restore.py): latencies to 0.1 us
    reference_threads: Optional[int] = None  # CPU threads each arm ran with (torch's, or the engine's own)
    contender_threads: Optional[int] = None
    # per timed run of each arm, the CPU time (ms) the other arm's processes used meanwhile (measure.loop.PairTiming)
    reference_other_cpu_ms: list[float] = field(default_factory=list)
    contender_other_cpu_ms: list[float] = field(default_factory=list)
    beside: Optional[str] = None  # a self-pair: the engine cell whose process was kept alive beside it
    # each arm timed alone, `pairs.solo` runs back to back right before the pairs (ms; the block order in
    # solo_order): the arm's cell at the pair's moment, which its runs inside the pair are compared with
    solo_order: str = ""
    reference_solo_ms: list[float] = field(default_factory=list)
    contender_solo_ms: list[float] = field(default_factory=list)

    LISTS: ClassVar[tuple[str, ...]] = ("reference_ms", "contender_ms", "reference_other_cpu_ms",
                                        "contender_other_cpu_ms", "reference_solo_ms", "contender_solo_ms")

    def to_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in (*self.LISTS, "load", "restored_from")}
        row["pairs"] = len(self.reference_ms)
        for name in self.LISTS:
            row[f"{name}_all"] = ";".join(f"{x:.4f}" for x in getattr(self, name))
        for f in dataclasses.fields(LoadStats):
            row[f.name] = getattr(self.load, f.name) if self.load is not None else NAN
        return row

    @classmethod
    def from_json(cls, data: dict) -> "PairRecord":
        kwargs = dict(data)
        if kwargs.get("load") is not None:
            kwargs["load"] = LoadStats(**{k: NAN if v is None and k not in TEXT_FIELDS else v
                                          for k, v in kwargs["load"].items()})
        if kwargs.get("wall_s") is None:
            kwargs["wall_s"] = NAN
        for side in ("reference", "contender"):
            kwargs[f"{side}_other_cpu_ms"] = [NAN if x is None else x for x in kwargs.get(f"{side}_other_cpu_ms", [])]
        return cls(**kwargs)


def csv_text(rows: list[dict[str, Any]], empty_header: Sequence[str] = ()) -> str:
    """Rows (dicts) as CSV text: the union of their keys in first-seen order; None and NaN as empty."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns or list(empty_header))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                         for k, v in row.items()})
    return buf.getvalue()


def _write_csv(rows: list[dict[str, Any]], path: Path, empty_header: Sequence[str]) -> Path:
    """Rows as a CSV file (`csv_text`). A file that already holds exactly this text is left as it is (a merge that
    changed nothing writes nothing)."""
    text = csv_text(rows, empty_header)
    if not (path.is_file() and path.read_bytes() == text.encode("utf-8")):
        atomic_write_text(path, text)
    return path


def read_rows(source: Path | io.StringIO):
    """raw_metrics.csv (a path, or its text) as the one frame of rows every reader uses: cell ids as text, every
    other column as pandas reads it."""
    import pandas as pd

    return pd.read_csv(source, dtype={"cell_id": str})


def rows_frame(records: Sequence["CellRecord"]):
    """The records' rows exactly as `read_rows` reads them from raw_metrics.csv (through the same CSV text), so the
    sweep's own choices (refinement, pairs) and the analysis see the same values; empty without records."""
    import pandas as pd

    if not records:
        return pd.DataFrame()
    return read_rows(io.StringIO(csv_text([r.to_row() for r in records])))


class ShrinkError(RuntimeError):
    """A merge would rebuild a table without rows it holds (their records are gone)."""


class ResultFileError(RuntimeError):
    """A result file that cannot be read (binary, truncated, not what its name says): one line naming the file
    and what to do."""


QUALITY_FILE = "quality_metrics.json"  # per scored cell: per-prompt scores and aggregates (a committed source)


def read_quality(path: Path) -> dict:
    """The per-cell scores of quality_metrics.json ({} when there is none yet); a damaged file raises
    ResultFileError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path}: not a {QUALITY_FILE} ({type(exc).__name__}: {str(exc)[:100]}); restore it "
                              f"from git (git checkout -- {path}) or delete it and run `dlm-bench score --config ...` "
                              f"to score every cell again") from None
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: not a {QUALITY_FILE} (a JSON mapping of cell ids); restore it from git or "
                              f"delete it and run `dlm-bench score --config ...`")
    return data


class ArchiveError(RuntimeError):
    """A record archive that cannot be read: the committed source of a study is damaged."""


def table_ids(path: Path, column: str) -> set[str]:
    """The values of a merged table's id column (empty when there is no table or no such column); a table that
    is not readable CSV text raises ResultFileError."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return {row[column] for row in csv.DictReader(f) if row.get(column)}
    except FileNotFoundError:
        return set()
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ResultFileError(f"{path}: not a readable CSV table ({type(exc).__name__}: {str(exc)[:100]}); it is "
                              f"rebuilt from the records: restore it from git (git checkout -- {path}), or delete "
                              f"it and run `dlm-bench merge --config ...`") from None


MERGE_MANIFEST = "merge.json"  # per table: how many records the last merge built it from
ARCHIVE_PRESET = 6  # xz level: records of a study repeat their prompts, and level 6 looks 8 MiB back


class _RecordFolder:
    """One JSON file per record under `<root>/<folder>/`, written atomically, read back tolerantly, and
    every record packed into `<root>/<folder>.jsonl.xz` (one JSON line per record, by id) by `merge`."""

    folder = ""
    record_type: Any = None
    id_field = ""  # the record's attribute that names its file
    noun = "record"
    table = ""  # the CSV the records merge into

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.records_dir = self.root / self.folder
        self.archive = self.root / f"{self.folder}.jsonl.xz"
        self._archived: Optional[tuple[tuple, str, dict[str, Any]]] = None  # (file stat, text, records by id)

    def path(self, record_id: str) -> Path:
        return self.records_dir / f"{record_id}.json"

    @contextlib.contextmanager
    def claim(self, work_id: str) -> Iterator[bool]:
        """Hold the lock of one piece of work (a cell's measurement, a pair, a cell's scoring) for this process;
        yields False when another run holds it. The lock is an flock on `<root>/locks/<work_id>`, shared by
        every store of the folder: the kernel releases it when a run dies."""
        path = self.root / "locks" / work_id
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def file_lock(self, name: str) -> Iterator[None]:
        """Wait for, then hold, the lock of a shared file of the folder (e.g. quality_metrics.json) while it is
        read, changed and written."""
        path = self.root / "locks" / f"file-{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self, record_id: str):
        """The record of an id: its file, else the archive's, else None."""
        record = self._load(self.path(record_id))
        return record if record is not None else self._archive()[1].get(record_id)

    def is_done(self, record_id: str, redo_contended: bool = False, redo_before: Optional[str] = None) -> bool:
        """Whether the record is a finished result (ok or oom); with `redo_contended`, a measurement marked
        contended is not (`dlm-bench run --remeasure_contended`); with `redo_before` (an ISO time, UTC), a
        measurement started before it is not (`--remeasure`)."""
        record = self.read(record_id)
        if record is None or record.status not in DONE_STATUSES:
            return False
        if redo_before is not None and (record.started_at or "") < redo_before:
            return False
        return not (redo_contended and record.load is not None and record.load.contended)

    def write(self, record) -> Path:
        path = self.path(getattr(record, self.id_field))
        atomic_write_text(path, json.dumps(record.to_json(), indent=1))
        return path

    def _load(self, path: Path):
        """A record file, or None when it is missing. A file that is not a whole record (truncated, binary,
        not a record) is reported once and moved to `<folder>/malformed/`, so its work is done again."""
        try:
            return self.record_type.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSON and Unicode errors are ValueErrors
            aside = self.records_dir / "malformed" / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, aside)
            except FileNotFoundError:  # another process moved it first
                return None
            log.warning("%s is not a %s (%s: %s); moved to %s, it will run again", path, self.noun,
                        type(exc).__name__, str(exc)[:120], aside)
            return None

    def check_archive(self) -> None:
        """Read the archive (when there is one): ArchiveError when it is damaged."""
        self._archive()

    def _archive(self) -> tuple[str, dict[str, Any]]:
        """(text, records by id) of the archive, read again only when its file changed. A damaged archive
        raises ArchiveError: it is never moved aside or rewritten, since it may be a study's only copy."""
        try:
            st = self.archive.stat()
        except FileNotFoundError:
            return "", {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._archived is None or self._archived[0] != key:
            try:
                text = lzma.decompress(self.archive.read_bytes()).decode("utf-8")
                records = [self.record_type.from_json(json.loads(line)) for line in text.splitlines()]
            except (lzma.LZMAError, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise ArchiveError(f"{self.archive}: not a {self.noun} archive ({type(exc).__name__}: "
                                   f"{str(exc)[:120]}); restore it from git (git checkout -- {self.archive.name})"
                                   ) from None
            self._archived = (key, text, {getattr(r, self.id_field): r for r in records})
        return self._archived[1], self._archived[2]

    def _all(self) -> list:
        """The archive's records, each replaced by the file of the same id where there is one."""
        records = dict(self._archive()[1])
        for path in sorted(self.records_dir.glob("*.json")):
            record = self._load(path)
            if record is not None:
                records[getattr(record, self.id_field)] = record
        return list(records.values())

    def _pack(self, records: list) -> None:
        """Write the archive of these records (by id), unless it already holds exactly them."""
        text = "".join(json.dumps(r.to_json(), separators=(",", ":")) + "\n"
                       for r in sorted(records, key=lambda r: getattr(r, self.id_field)))
        if text != self._archive()[0]:
            atomic_write_bytes(self.archive, lzma.compress(text.encode("utf-8"), preset=ARCHIVE_PRESET))

    def shrink_problem(self, records: Optional[list] = None, exempt: frozenset[str] = frozenset()) -> Optional[str]:
        """One line when `records` (default: every readable record) would rebuild the table without some
        of the ids it holds (ids in `exempt` are about to be measured again), else None."""
        records = self._all() if records is None else records
        held = table_ids(self.root / self.table, self.id_field)
        lost = held - {getattr(r, self.id_field) for r in records} - exempt
        if not lost:
            return None
        return (f"{self.root}: {self.table} holds {len(held)} rows but the {self.noun}s there ({self.archive.name} "
                f"and {self.folder}/) rebuild {len(records)}; {len(lost)} of its rows have no record (e.g. "
                f"{sorted(lost)[0]}). Nothing was written. Rebuild the records from the table "
                f"(scripts/restore_records.py {self.root}), or pass --allow_shrink to drop those rows")

    def _merge(self, empty_header: Sequence[str], allow_shrink: bool,
               dropped: frozenset[str] = frozenset()) -> tuple[list, Path]:
        """Check, pack and write the table; returns (records, table path). Rows of `dropped` records may go."""
        records = self.records()
        problem = None if allow_shrink else self.shrink_problem(records, exempt=dropped)
        if problem:
            raise ShrinkError(problem)
        self._pack(records)
        path = _write_csv([r.to_row() for r in records], self.root / self.table, empty_header)
        manifest_path = self.root / MERGE_MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            manifest = {}
        manifest[self.table] = {"records": len(records)}
        text = json.dumps(dict(sorted(manifest.items())), indent=1) + "\n"
        if not manifest_path.exists() or manifest_path.read_text(encoding="utf-8") != text:
            atomic_write_text(manifest_path, text)
        return records, path

    def records(self) -> list:
        raise NotImplementedError

    def drop_stale(self, wanted: set[str], before: str) -> list[str]:
        """Remove the records that are not `wanted` and were started before `before` (an ISO time, UTC): what a
        study re-measured at one commit (`--remeasure`) no longer asks for. Their rows leave the table at the
        next merge; returns their ids."""
        records = self._all()
        stale = {getattr(r, self.id_field) for r in records
                 if getattr(r, self.id_field) not in wanted and (r.started_at or "") < before}
        if not stale:
            return []
        self._pack([r for r in records if getattr(r, self.id_field) not in stale])
        for record_id in stale:
            self.path(record_id).unlink(missing_ok=True)
        return sorted(stale)


# the grid columns that name an engine cell's per-prompt rows in per_prompt.csv
PER_PROMPT_IDENTITY = ("model_name", "kind", "engine", "weights_format", "batch_size", "seq_len", "steps", "sampler")


class ResultStore(_RecordFolder):
    """Per-cell records under `<root>/cells/` and the merged tables in `<root>/`."""

    folder, record_type, id_field, noun, table = "cells", CellRecord, "cell_id", "cell record", "raw_metrics.csv"


    def records(self) -> list[CellRecord]:
        """Every readable cell record, in a stable order (model, N, B, then the cell's options)."""
        return sorted(self._all(), key=lambda r: (str(r.identity.get("model_name")), r.identity.get("seq_len") or 0,
                                                  r.identity.get("batch_size") or 0,
                                                  json.dumps(r.identity, sort_keys=True), r.cell_id))

    def rows(self) -> list[dict]:
        """Every readable record as its row of raw_metrics.csv (`CellRecord.to_row`), in the table's order."""
        return [r.to_row() for r in self.records()]

    def merge(self, allow_shrink: bool = False) -> Path:
        """Pack the records and rebuild raw_metrics.csv, per_prompt.csv (engine cells' per-prompt pairs, when
        there are any) and environment.json from them; returns the path of raw_metrics.csv. Raises
        ShrinkError (nothing written) when a row of raw_metrics.csv has no record, unless `allow_shrink`."""
        records, csv_path = self._merge(["cell_id", "status"], allow_shrink)
        per_prompt = [{"cell_id": r.cell_id, **{k: r.identity.get(k) for k in PER_PROMPT_IDENTITY}, **entry}
                      for r in records for entry in r.per_prompt]
        if per_prompt or (self.root / "per_prompt.csv").exists():
            _write_csv(per_prompt, self.root / "per_prompt.csv", ["cell_id", "passage_id"])
        environments: dict[str, dict] = {}
        for r in records:
            key = json.dumps(r.environment, sort_keys=True)
            environments.setdefault(key, {"environment": r.environment, "cell_ids": []})["cell_ids"].append(r.cell_id)
        atomic_write_text(self.root / "environment.json", json.dumps(list(environments.values()), indent=1))
        return csv_path


class PairStore(_RecordFolder):
    """Per-pair records under `<root>/pairs/`, merged into `<root>/pairs.csv`."""

    folder, record_type, id_field, noun, table = "pairs", PairRecord, "pair_id", "pair record", "pairs.csv"

    def records(self) -> list[PairRecord]:
        return sorted(self._all(), key=lambda r: (r.kind, r.seq_len, r.batch_size, r.reference, r.contender))

    def merge(self, allow_shrink: bool = False, dropped: frozenset[str] = frozenset()) -> Path:
        """Pack the records and rebuild pairs.csv (ShrinkError as `ResultStore.merge`; the rows of `dropped`
        records, removed by `drop_stale`, may go)."""
        return self._merge(["pair_id", "status", "reference_cell_id", "contender_cell_id"], allow_shrink,
                           dropped)[1]

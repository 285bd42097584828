"""Checks of the output folders and result files, run before any model loads.

A run that would end in a disk error after minutes of loading and timing is refused at once: the results
and figures folders must take a file (a probe is written, synced and removed) and have room for what the
grid will write (an estimate with a margin), and every result file already there must be readable, so a
damaged table, score file or archive is named in one line with what to do about it.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import Experiment
from .results import QUALITY_FILE, PairStore, ResultFileError, ResultStore, read_quality

RECORD_BYTES = 8 * 1024  # a cell record without generations: identity, settings, environment, timings
BYTES_PER_GENERATED_TOKEN = 32  # a generated token kept as its id and its text, in the record and the scores
FIGURE_BYTES = 8 * 1024 * 1024  # the figures and summary of one study
MARGIN = 3.0  # room asked for: this many times the estimate (tables, archives and temporary copies besides)


class OutputError(RuntimeError):
    """An output folder that cannot take the run's files: one line naming the folder and the field."""


@dataclass(frozen=True)
class Room:
    """What a run will write (estimated, bytes) and what the folder has free (bytes)."""

    needed: int
    free: int


def estimated_bytes(exp: Experiment, cells: int) -> int:
    """Bytes the run's records, tables and figures take, estimated from the grid: every cell's record, the
    generations the quality pass keeps (max_prompts answers of N tokens per cell), the pairs and the figures."""
    tokens = exp.prompts.max_prompts * max(exp.grid.seq_len) if exp.quality.generate else max(exp.grid.seq_len)
    per_cell = RECORD_BYTES + tokens * BYTES_PER_GENERATED_TOKEN
    return cells * per_cell + FIGURE_BYTES


def probe_writable(folder: Path, field: str) -> None:
    """Write, sync and remove a probe file in `folder` (made when missing); OutputError when that fails (a
    read-only mount, no permission, a full disk)."""
    probe = folder / f".dlm-bench-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise OutputError(f"{field}: cannot write to {folder} ({exc.strerror or exc}); allowed: a folder this user "
                          f"can write, on a file system with room") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def check_room(folder: Path, needed: int, field: str) -> Room:
    """OutputError unless the file system of `folder` has MARGIN times `needed` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < MARGIN * needed:
        raise OutputError(f"{field}: {folder} has {free / 2**20:.1f} MiB free; this run writes about "
                          f"{needed / 2**20:.1f} MiB (records, tables, figures) and asks for {MARGIN:g} times that; "
                          f"allowed: a folder with room (free some space or choose another --{field})")
    return Room(needed, free)


def check_output(exp: Experiment, cells: int) -> None:
    """The results and figures folders take a file and have room for the run (OutputError otherwise)."""
    needed = estimated_bytes(exp, cells)
    for field, folder in (("output_dir", exp.results_dir), ("figures_dir", exp.figure_dir)):
        probe_writable(folder, field)
        check_room(folder, needed if field == "output_dir" else FIGURE_BYTES, field)


def _check_csv(path: Path) -> None:
    """ResultFileError unless `path` (when present) is UTF-8 CSV text with a header row."""
    if not path.is_file():
        return
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle)
            header = next(rows, None)
            for _ in rows:
                pass
    except (UnicodeDecodeError, csv.Error) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:100]}"
    else:
        if header:
            return
        problem = "no header row"
    raise ResultFileError(f"{path}: not a readable CSV table ({problem}); it is rebuilt from the records: restore it "
                          f"from git (git checkout -- {path}), or delete it and run `dlm-bench merge --config ...`")


def check_result_files(root: Path) -> None:
    """Every result file already in a results folder is readable: the merged tables, the scores and the record
    archives (ResultFileError or results.ArchiveError, one line each, naming the file and what to do)."""
    for table in (ResultStore.table, PairStore.table, "per_prompt.csv"):
        _check_csv(root / table)
    read_quality(root / QUALITY_FILE)
    for store in (ResultStore(root), PairStore(root)):
        store.check_archive()

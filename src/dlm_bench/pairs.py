"""The pairs step: every ratio the summary publishes, timed as interleaved pairs of its two cells.

After the cells (and the quality pass that finds S_parity), top to bottom:
1. `selection.pairs.wanted_pairs` names the cell pairs whose ratio the summary publishes (the
   Speedup Factor as published and at their best, the fast-path table), from the merged rows;
2. for each pair not measured yet, both arms' models are loaded (and kept for the next pair), both
   generators get the same prompts and the attention kernel their cells ran on, each arm is warmed
   up, then `pairs.repeats` pairs are timed (measure.loop.time_pair: the cells' own timed region,
   marks included): one generation of the reference arm and one of the contender, back to back, in
   an order drawn per pair from a seeded generator, so drift and load hit both arms alike;
3. the pair's `PairRecord` goes to `<output_dir>/pairs/<pair_id>.json`, and `pairs.csv` is rebuilt.
Finished pairs are skipped on the next run, as cells are. An OOM or error is recorded for that pair
and the step goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone


import pandas as pd
import torch
from tqdm import tqdm

from .selection.baseline import split_engines
from .selection.pairs import WantedPair, wanted_pairs
from .selection.parity import parity_table
from .config import Cell, Experiment, expand_cells
from .measure import load as machine_load
from .measure.clock import clock_for
from .measure.environment import hardware_name, resolve_device
from .measure.loop import Arm, time_pair
from .models.loader import LoadedModel, LoadSettings, load_model
from .quality.prompts import PromptProvider
from .results import PairRecord, PairStore, ResultStore
from .runner import kernel_of_label, make_generator

log = logging.getLogger(__name__)


@dataclass
class PairsSummary:
    wanted: int
    skipped: int  # measured by an earlier run
    ok: int = 0
    failed: int = 0
    not_in_grid: int = 0  # a cell id of the rows that this config and hardware do not produce


def pair_id(pair: WantedPair, exp: Experiment) -> str:
    """Stable id of a pair: its two cells and the pairs settings."""
    blob = json.dumps({"reference": pair.reference_cell_id, "contender": pair.contender_cell_id,
                       "repeats": exp.pairs.repeats, "warmup": exp.pairs.warmup, "seed": exp.seed}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def run_pairs(exp: Experiment, progress: bool = True) -> PairsSummary:
    """Measure every wanted pair not measured yet; rebuild pairs.csv."""
    device = resolve_device(exp.device)
    if device.type == "cpu" and exp.cpu_threads is not None:
        torch.set_num_threads(exp.cpu_threads)
    hardware = hardware_name(device)
    root = exp.resolve(exp.output_dir)
    rows = pd.DataFrame(ResultStore(root).rows())  # the records themselves; raw_metrics.csv is not read back
    if "status" in rows:  # the published ratios are torch paths' (engine cells carry their own per-prompt pairs)
        rows = split_engines(rows)[0]
    wanted = wanted_pairs(rows, parity_table(rows), exp.pairs.measure) if "status" in rows else []
    kernels = dict(zip(rows["cell_id"], rows["attention_kernel"])) if "attention_kernel" in rows else {}
    store = PairStore(root)
    todo = [p for p in wanted if not store.is_done(pair_id(p, exp))]
    summary = PairsSummary(len(wanted), len(wanted) - len(todo))
    cells = {c.cell_id(hardware): c for c in expand_cells(exp)}
    prompts = PromptProvider(exp.prompts, exp.models, exp.base_dir, exp.seed)
    settings = LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir)
    loaded: dict[str, LoadedModel] = {}
    clock = clock_for(device)
    log.info("pairs: %d wanted, %d already measured, %d to measure (%d pairs each)", len(wanted), summary.skipped,
             len(todo), exp.pairs.repeats)

    def arm(cell: Cell) -> Arm:
        """The cell as one side of a pair, on the attention kernel its own measurement ran on."""
        if cell.model.name not in loaded:
            loaded[cell.model.name] = load_model(cell.model, device, settings)
        model = loaded[cell.model.name]
        batch = prompts.for_model(model.spec.name, model.architecture.vocab_size, model.mask_token_id, cell.seq_len)
        torch.manual_seed(cell.settings.seed)
        kernel = kernel_of_label(kernels.get(cell.cell_id(hardware))) or model.attention_kernel
        return Arm(make_generator(cell, model), batch.batch(cell.batch_size, model.device)[0], cell.n_out,
                   cell.steps, kernel=kernel)

    for pair in tqdm(todo, desc="pairs", unit="pair", disable=not progress):
        reference, contender = cells.get(pair.reference_cell_id), cells.get(pair.contender_cell_id)
        if reference is None or contender is None:
            log.warning("pair %s / %s: a cell is not in this config's grid on %s; skipped", pair.reference_cell_id,
                        pair.contender_cell_id, hardware)
            summary.not_in_grid += 1
            continue
        record = PairRecord(pair_id(pair, exp), pair.kind, "error", exp.name, hardware, pair.reference_cell_id,
                            pair.contender_cell_id, reference.describe(), contender.describe(), reference.seq_len,
                            reference.batch_size, exp.pairs.warmup,
                            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        t0, before = time.perf_counter(), machine_load.sample(device)
        try:
            rng = random.Random(f"{exp.seed}:{record.pair_id}")
            record.order, record.reference_ms, record.contender_ms = time_pair(
                arm(reference), arm(contender), exp.pairs.repeats, exp.pairs.warmup, clock, rng)
            record.status = "ok"
        except torch.OutOfMemoryError as exc:
            record.status, record.error = "oom", str(exc).splitlines()[0][:500]
        except Exception as exc:  # recorded; the step goes on
            log.exception("pair %s failed", record.pair_id)
            record.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        record.load = machine_load.between(before, machine_load.sample(device))
        record.wall_s = time.perf_counter() - t0
        store.write(record)
        summary.ok += record.status == "ok"
        summary.failed += record.status != "ok"
    store.merge()
    return summary


def describe(summary: PairsSummary) -> str:
    return (f"pairs: {summary.wanted} wanted, {summary.skipped} measured before, {summary.ok} measured now, "
            f"{summary.failed} failed, {summary.not_in_grid} not in this grid")

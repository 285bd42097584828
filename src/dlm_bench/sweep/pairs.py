"""The pairs step: every ratio the summary publishes, timed as interleaved pairs of its two cells.

After the cells (and the quality pass that finds S_parity), top to bottom:
1. `selection.pairs.wanted_pairs` names the cell pairs whose ratio the summary publishes (the
   Speedup Factor as published and at their best, where the AR side may be another engine's cell,
   and the fast-path table), from the records' rows;
2. for each pair not measured yet, both arms are made ready from their cells' records (`cells_of_records`:
   each record's grid columns and settings on the config's model of its name; the grid is not expanded
   again): a torch cell's model is loaded (and kept for the next pair) and runs on the attention kernel its
   record says it ran on; another engine's cell runs
   through that engine (llama-server, llama-diffusion-cli, an OpenAI endpoint) as a generator. Both
   get the same prompts, each arm is warmed up, then `pairs.repeats` pairs are timed
   (measure.loop.time_pair: the cells' own timed region, marks included): one generation of the
   reference arm and one of the contender, back to back, in an order drawn per pair from a seeded
   generator, so drift and load hit both arms alike, with an idle gap before each run when an arm is
   another engine's process; before the pairs, each arm is timed `pairs.solo` times alone (its cell at the
   pair's moment, for the summary's arm-against-itself check). Both arms' thread counts go into the record;
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
from typing import Callable, Optional


import torch
from tqdm import tqdm

from ..registry import IN_PROCESS
from ..selection.baseline import split_engines
from ..selection.pairs import WantedPair, wanted_pairs
from ..selection.parity import parity_table
from ..selection.parity_rule import ParityRule
from ..config import Cell, Experiment
from ..measure import load as machine_load
from ..measure.clock import clock_for
from ..measure.environment import hardware_name, resolve_device
from ..engines import EngineError
from ..engines.generator import EngineGenerator
from ..engines.measure import IDLE_GAP_S
from ..engines.pool import EnginePool
from ..measure.loop import Arm, time_pair
from ..models.loader import LoadedModel, LoadSettings, load_model
from ..workload.prompts import PromptProvider
from ..results import QUALITY_FILE, CellRecord, PairRecord, PairStore, ResultStore, read_quality, rows_frame
from .runner import make_generator

log = logging.getLogger(__name__)


@dataclass
class PairsSummary:
    wanted: int
    skipped: int  # measured by an earlier run
    ok: int = 0
    failed: int = 0
    not_rebuilt: int = 0  # a cell whose record is not a cell of this config's models on this hardware
    busy: int = 0  # measured, or being measured, by another run on the same folder


def pair_id(pair: WantedPair, exp: Experiment) -> str:
    """Stable id of a pair: its two cells (and what runs beside a self-pair) and the pairs settings."""
    identity = {"reference": pair.reference_cell_id, "contender": pair.contender_cell_id,
                "repeats": exp.pairs.repeats, "warmup": exp.pairs.warmup, "seed": exp.seed}
    if pair.beside is not None:  # pairs from before self-pairs keep their ids
        identity["beside"] = pair.beside
    if exp.pairs.solo:  # and those from before the arms' runs alone
        identity["solo"] = exp.pairs.solo
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class PairArm:
    """A pair's side, ready: the loop's Arm, the CPU threads it runs with, and its engine's own processes."""

    arm: Arm
    threads: Optional[int]
    engine: bool  # another engine's process: it may spin threads, so the pair leaves an idle gap
    pids: tuple[int, ...] = ()  # the engine's long-lived processes (their CPU time is the pair's own work)


class ArmMaker:
    """Makes a cell into one side of a pair: a torch generator on the attention kernel the cell's own
    measurement ran on (`kernels`: cell id -> the record's `kernel` field), or the cell's engine as a generator
    (EngineError when it cannot run); models load once and are kept for the next pair."""

    def __init__(self, exp: Experiment, device: torch.device, pool: EnginePool, kernels: dict[str, str],
                 hardware: str):
        self.exp, self.device, self.pool, self.kernels, self.hardware = exp, device, pool, kernels, hardware
        self.prompts = PromptProvider(exp.prompts, exp.models, exp.base_dir, exp.seed)
        self.settings = LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir)
        self.loaded: dict[str, LoadedModel] = {}

    def __call__(self, cell: Cell) -> PairArm:
        if cell.model.name not in self.loaded:
            self.loaded[cell.model.name] = load_model(cell.model, self.device, self.settings)
        model = self.loaded[cell.model.name]
        batch = self.prompts.for_model(model.spec.name, model.architecture.vocab_size, model.mask_token_id,
                                       cell.seq_len)
        ids = batch.batch(cell.batch_size, model.device)[0]
        if cell.engine not in (None, IN_PROCESS):
            engine = self.pool.engine_for(cell, model.tokenizer)
            return PairArm(Arm(EngineGenerator(engine), ids, cell.n_out, cell.steps, pids=engine.pids()),
                           engine.threads, True, engine.pids())
        torch.manual_seed(cell.settings.seed)
        kernel = self.kernels.get(cell.cell_id(self.hardware)) or model.attention_kernel
        return PairArm(Arm(make_generator(cell, model), ids, cell.n_out, cell.steps, kernel=kernel),
                       torch.get_num_threads() if self.device.type == "cpu" else None, False)


def measure_pair(record: PairRecord, make_arm: Callable[[Cell], PairArm], reference: Cell, contender: Cell,
                 exp: Experiment, clock, device: torch.device, guard: machine_load.LoadGuard,
                 beside: Optional[Cell] = None) -> PairRecord:
    """Time one pair into its record (measure.loop.time_pair: interleaved, the order drawn per pair, an idle
    gap before every run when an arm is another engine, the other arm's engine process stopped meanwhile),
    after the guard's wait for a quiet machine; `beside`: an engine cell whose process is started and left
    idle while a self-pair runs. The record carries the load around the pair and the other side's CPU time
    during every run. An OOM or any error, an engine's included, is the record's status and one-line error;
    it never raises."""
    t0, quiet, before, pids, beside_pids = time.perf_counter(), None, None, (), ()
    try:
        if beside is not None:
            idle = make_arm(beside)
            idle.arm.warm_up(1)  # its process runs once, then idles beside the pair, watched
            beside_pids = idle.pids
        ref, con = make_arm(reference), make_arm(contender)
        pids = tuple(dict.fromkeys(ref.pids + con.pids + beside_pids))
        quiet = guard.wait_for_quiet(f"pair {record.reference} / {record.contender}", pids)
        before = machine_load.sample(device, pids)
        record.reference_threads, record.contender_threads = ref.threads, con.threads
        gap = IDLE_GAP_S if (ref.engine or con.engine) else 0.0
        rng = random.Random(f"{exp.seed}:{record.pair_id}")
        timing = time_pair(ref.arm, con.arm, exp.pairs.repeats, exp.pairs.warmup, clock, rng, gap, beside_pids,
                           exp.pairs.solo)
        record.order, record.reference_ms, record.contender_ms = timing.order, timing.reference_ms, timing.contender_ms
        record.solo_order = timing.solo_order
        record.reference_solo_ms, record.contender_solo_ms = timing.reference_solo_ms, timing.contender_solo_ms
        record.reference_other_cpu_ms = timing.reference_other_cpu_ms
        record.contender_other_cpu_ms = timing.contender_other_cpu_ms
        record.status = "ok"
    except torch.OutOfMemoryError as exc:
        record.status, record.error = "oom", str(exc).splitlines()[0][:500]
    except EngineError as exc:  # the engine's own one-line reason
        log.warning("pair %s: %s", record.pair_id, exc)
        record.error = f"EngineError: {str(exc).splitlines()[0][:500]}"
    except Exception as exc:  # recorded; the step goes on
        log.exception("pair %s failed", record.pair_id)
        record.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if quiet is not None and before is not None:
        record.load = guard.stats(quiet, machine_load.between(before, machine_load.sample(device, pids)))
    record.wall_s = time.perf_counter() - t0
    return record


def cells_of_records(records: list[CellRecord], exp: Experiment, hardware: str) -> dict[str, Cell]:
    """The cells the records measured on this hardware, by id: each rebuilt from its record (`Cell.from_record`)
    on the config's model of its name, and kept only where it is the same cell (its id is the record's). A record
    of another model spec, other settings or other hardware yields none."""
    models = {m.name: m for m in exp.models}
    cells = {}
    for record in records:
        model = models.get(record.identity.get("model_name"))
        if model is None or record.hardware != hardware:
            continue
        try:
            cell = Cell.from_record(record.identity, record.settings, model)
        except (TypeError, ValueError):  # settings of another version of the harness
            continue
        if cell.cell_id(hardware) == record.cell_id:
            cells[record.cell_id] = cell
    return cells


def run_pairs(exp: Experiment, progress: bool = True, remeasure_contended: bool = False,
              redo_before: Optional[str] = None) -> PairsSummary:
    """Measure every wanted pair not measured yet (with `remeasure_contended`, and every pair marked
    contended; with `redo_before`, an ISO time, every pair measured before it); rebuild pairs.csv."""
    device = resolve_device(exp.device)
    if device.type == "cpu" and exp.cpu_threads is not None:
        torch.set_num_threads(exp.cpu_threads)
    hardware = hardware_name(device)
    root = exp.results_dir
    records = ResultStore(root).records()
    every = rows_frame(records)  # the records themselves, read as the analysis reads raw_metrics.csv
    wanted = []
    if "status" in every:
        rows, engine_rows = split_engines(every)
        quality, rule = read_quality(root / QUALITY_FILE), ParityRule(exp.quality.parity_margin)
        wanted = wanted_pairs(rows, parity_table(rows, quality=quality, rule=rule), exp.pairs.measure, engine_rows,
                              exp.pairs.quantized_best, quality, rule)
    store = PairStore(root)
    todo = [p for p in wanted if not store.is_done(pair_id(p, exp), remeasure_contended, redo_before)]
    summary = PairsSummary(len(wanted), len(wanted) - len(todo))
    cells = cells_of_records(records, exp, hardware) if todo else {}  # the arms: what was measured, grid's or not
    kernels = {r.cell_id: r.kernel for r in records if r.kernel}  # the kernel each cell's own measurement ran on
    clock = clock_for(device)
    log.info("pairs: %d wanted, %d already measured, %d to measure (%d pairs each)", len(wanted), summary.skipped,
             len(todo), exp.pairs.repeats)

    guard = machine_load.LoadGuard(exp.load_guard, device)
    with EnginePool(exp, device, root / "engine_logs", progress) as pool:
        make_arm = ArmMaker(exp, device, pool, kernels, hardware)
        for pair in tqdm(todo, desc="pairs", unit="pair", disable=not progress):
            reference, contender = cells.get(pair.reference_cell_id), cells.get(pair.contender_cell_id)
            beside = cells.get(pair.beside) if pair.beside is not None else None
            if reference is None or contender is None or (pair.beside is not None and beside is None):
                log.warning("pair %s / %s: a cell's record is not a cell of this config's models on %s; skipped",
                            pair.reference_cell_id, pair.contender_cell_id, hardware)
                summary.not_rebuilt += 1
                continue
            pid = pair_id(pair, exp)
            with store.claim(f"pair-{pid}") as mine:
                if not mine or store.is_done(pid, remeasure_contended, redo_before):  # another run has it
                    log.warning("pair %s (%s / %s): %s by another run on %s; left to it", pid, reference.describe(),
                                contender.describe(), "being measured" if not mine else "measured", root)
                    summary.busy += 1
                    continue
                record = PairRecord(pid, pair.kind, "error", exp.name, hardware, pair.reference_cell_id,
                                    pair.contender_cell_id, reference.describe(), contender.describe(),
                                    reference.seq_len, reference.batch_size, exp.pairs.warmup,
                                    started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    beside=beside.describe() if beside is not None else None)
                store.write(measure_pair(record, make_arm, reference, contender, exp, clock, device, guard, beside))
            summary.ok += record.status == "ok"
            summary.failed += record.status != "ok"
    dropped: list[str] = []
    if redo_before is not None:  # a study re-measured at one commit keeps no pair its grid no longer asks for
        dropped = store.drop_stale({pair_id(p, exp) for p in wanted}, redo_before)
        if dropped:
            log.info("pairs: %d records measured before this run and no longer wanted removed", len(dropped))
    store.merge(dropped=frozenset(dropped))
    return summary


def describe(summary: PairsSummary) -> str:
    return (f"pairs: {summary.wanted} wanted, {summary.skipped} measured before, {summary.ok} measured now, "
            f"{summary.failed} failed, {summary.busy} left to another run, {summary.not_rebuilt} of other models or "
            "hardware")

"""Records rebuilt from the tables: values by hand, a round trip over every kind of record, and refusal."""

import csv
import math
import shutil

import pytest

from dlm_bench.config import (IDENTITY_COLUMNS, ARDecoding, Cell, DiffusionDecoding, MeasurementSettings, ModelSpec,
                              TimingSpec)
from dlm_bench.stats import Estimate
from dlm_bench.sweep.restore import RestoreError, parse_value, restore_folder
from dlm_bench.results import (AnswerStats, CellRecord, EngineStats, LoadStats, MemoryStats, PairRecord, PairStore,
                         QualityResult, Repetition, ResultStore, RooflineStats, TimingStats, WorkStats)

SETTINGS = MeasurementSettings(seed=3, timing=TimingSpec(), prompt_source="file", prompt_digest="0042",
                               max_prompts=2, prompt_tokenizers=("tok/a", "tok/b"), quality_batch_size=None,
                               allow_attention_mismatch=False)
LOAD = LoadStats(0.25, 0.5, 0.0, math.nan)


@pytest.mark.parametrize("text, value", [
    ("", None), ("True", True), ("False", False), ("7", 7), ("-3", -3), ("0.5", 0.5), ("1e-05", 1e-05),
    ("64.0", 64.0), ("inf", math.inf), ("0042", "0042"), ("1234e56x", "1234e56x"), ("cpu: x", "cpu: x"),
    ("['a', 'b']", ["a", "b"]), ("[broken", "[broken"), ("nan-ish", "nan-ish")])
def test_parse_value_returns_what_wrote_the_text(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def _cell(decoding: DiffusionDecoding | ARDecoding, **engine) -> Cell:
    family = "llada" if isinstance(decoding, DiffusionDecoding) else "llama"
    return Cell(ModelSpec(f"m-{family}", family, path="ckpt"), SETTINGS, 1, 16, "fp32", "sdpa", decoding, **engine)


def _records() -> list[CellRecord]:
    env = {"hardware": "cpu: test", "torch_version": "2.13.0", "slurm_job_id": None, "cpu_count": 2}
    out = []
    for cell_id, cell in (("ar", _cell(ARDecoding("static"))),
                          ("dif", _cell(DiffusionDecoding(steps=4, sampler="random", cache="dual", block_length=8,
                                                          schedule="llada", cfg_scale=0.0))),
                          ("eng", _cell(ARDecoding(None), engine="llamacpp", weights_format="q8_0")),
                          ("err", _cell(DiffusionDecoding(steps=8, sampler="low_confidence", cache="none",
                                                          block_length=8, schedule="llada")))):
        r = CellRecord(cell_id, cell.identity(), "error" if cell_id == "err" else "ok", "exp", "synthetic",
                       "cpu: test", SETTINGS.as_dict(), dict(env), attention_kernel="sdpa", clock="perf_counter",
                       warmup=2, started_at="2026-12-01T10:00:00+00:00", wall_s=1.5)
        if r.status == "error":
            r.error = "RuntimeError: boom, with a comma"
            out.append(r)
            continue
        r.repetitions = [Repetition(12.34567, 100.0, 8), Repetition(11.0, 110.0, 8)]
        r.timing = TimingStats.from_repetitions(r.repetitions)
        r.work = WorkStats.of(8, 8, 8)
        r.memory = MemoryStats(math.nan, math.nan, 0.75)
        r.roofline = RooflineStats(1e9, 2e7, 0.1, 0.002, math.nan, math.nan, math.nan, math.nan, "none")
        r.answers = AnswerStats(7.5, 600.0)
        r.load = LOAD
        r.quality = QualityResult("model quality", 2, "enc@L6", None,
                                  {"bertscore_f1": Estimate(0.5, 0.25, 0.75), "gen_ppl": Estimate(20.0, math.nan, 30.0)})
        r.passage_ids = ["line1", "line2"]
        r.n_params, r.n_params_non_embedding, r.prompt_source = 1000, 800, "file"
        r.agreement_with_uncached = 0.875 if cell_id == "dif" else None
        r.generations = [{"passage_id": "line1", "output_text": "lost in the table"}]
        if cell_id == "eng":
            r.engine = EngineStats("b1234", "cpu f32", 2.0, 9.5, 0, 1.0, 5.5)
            # an entry's own 'steps' (llama.cpp's count) under a name that merge also fills from the identity
            r.per_prompt = [{"passage_id": "line1", "steps": 32, "pairs": 3, "speedup_vs_torch": 5.25},
                            {"passage_id": "line2", "steps": 16, "pairs": 3, "speedup_vs_torch": 4.0}]
        out.append(r)
    return out


def _pairs() -> list[PairRecord]:
    return [PairRecord("p1", "speedup", "ok", "exp", "cpu: test", "ar", "dif", "AR", "DIF", 16, 1, 1, "RCCR",
                       [10.123456, 11.5], [5.0, 6.25], LOAD, started_at="2026-12-01T11:00:00+00:00", wall_s=3.0,
                       solo_order="CR", reference_solo_ms=[9.5, 10.25], contender_solo_ms=[5.5, 4.75]),
            PairRecord("p2", "fast_paths", "error", "exp", "cpu: test", "dif", "err", "DIF", "ERR", 16, 1, 1,
                       error="ValueError: x")]


TABLES = ("raw_metrics.csv", "per_prompt.csv", "environment.json", "pairs.csv")


def _study(root):
    cells, pairs = ResultStore(root), PairStore(root)
    for r in _records():
        cells.write(r)
    for p in _pairs():
        pairs.write(p)
    cells.merge()
    pairs.merge()
    return {name: (root / name).read_bytes() for name in TABLES}


def _lose_records(root):
    for name in ("cells", "pairs"):
        shutil.rmtree(root / name)
        (root / f"{name}.jsonl.xz").unlink()


def test_records_rebuilt_from_the_tables_merge_into_the_same_tables(tmp_path):
    tables = _study(tmp_path)
    _lose_records(tmp_path)
    done = restore_folder(tmp_path, "test tables")
    assert (done.cells, done.pairs, done.kept_cells, done.kept_pairs) == (4, 2, 0, 0)
    assert {name: (tmp_path / name).read_bytes() for name in TABLES} == tables
    shutil.rmtree(tmp_path / "cells")  # the packed archive alone carries them now
    shutil.rmtree(tmp_path / "pairs")
    ResultStore(tmp_path).merge()
    PairStore(tmp_path).merge()
    assert {name: (tmp_path / name).read_bytes() for name in TABLES} == tables


def test_a_rebuilt_record_has_every_part_of_the_original_but_what_no_table_holds(tmp_path):
    _study(tmp_path)
    _lose_records(tmp_path)
    restore_folder(tmp_path, "test tables")
    store, pairs = ResultStore(tmp_path), PairStore(tmp_path)
    for original in _records():
        again = store.read(original.cell_id)
        assert again.restored_from == "raw_metrics.csv (test tables)" and again.generations == []
        assert list(again.identity) == [c for c in IDENTITY_COLUMNS]  # every grid column, in row order
        assert again.identity == original.identity and again.settings == original.settings
        assert again.environment == original.environment and again.per_prompt == original.per_prompt
        kept = ("timing", "work", "memory", "roofline", "answers", "load", "quality", "engine", "error", "warmup",
                "agreement_with_uncached", "passage_ids", "started_at", "wall_s", "n_params", "attention_kernel")
        assert {k: again.to_json()[k] for k in kept} == {k: original.to_json()[k] for k in kept}
        # repetitions: the latencies at the table's 0.1 us, no per-repetition marks
        assert [r.latency_ms for r in again.repetitions] == [round(r.latency_ms, 4) for r in original.repetitions]
        assert all(math.isnan(r.tokens_per_s) for r in again.repetitions)
    p1 = pairs.read("p1")
    assert p1.reference_ms == [10.1235, 11.5] and p1.order == "RCCR" and p1.load == LOAD
    assert p1.restored_from == "pairs.csv (test tables)" and pairs.read("p2").error == "ValueError: x"


def test_records_already_there_are_kept_and_only_missing_ones_rebuilt(tmp_path):
    _study(tmp_path)
    (tmp_path / "cells.jsonl.xz").unlink()
    for cell_id in ("ar", "dif"):
        (tmp_path / "cells" / f"{cell_id}.json").unlink()
    done = restore_folder(tmp_path)
    assert (done.cells, done.kept_cells, done.pairs, done.kept_pairs) == (2, 2, 0, 2)
    store = ResultStore(tmp_path)
    assert store.read("eng").generations and store.read("eng").restored_from is None
    assert store.read("ar").restored_from == "raw_metrics.csv"


def test_a_table_value_that_would_not_come_back_stops_the_restore_before_anything_is_written(tmp_path):
    _study(tmp_path)
    _lose_records(tmp_path)
    path = tmp_path / "raw_metrics.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["a_column_no_record_has"] = "7"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = path.read_bytes()
    with pytest.raises(RestoreError, match="a_column_no_record_has: '7' would become ''"):
        restore_folder(tmp_path)
    assert path.read_bytes() == before and not (tmp_path / "cells").exists()
    assert not (tmp_path / "cells.jsonl.xz").exists()


def test_a_cell_holds_the_decoding_of_its_models_kind():
    with pytest.raises(ValueError, match="decoding: ARDecoding is not allowed for the diffusion model 'm'; allowed: DiffusionDecoding"):
        Cell(ModelSpec("m", "llada", path="ckpt"), SETTINGS, 1, 16, "fp32", "sdpa", ARDecoding("eager"))
    with pytest.raises(ValueError, match="decoding: DiffusionDecoding is not allowed for the autoregressive model 'm'; "
                                         "allowed: ARDecoding"):
        Cell(ModelSpec("m", "llama", path="ckpt"), SETTINGS, 1, 16, "fp32", "sdpa",
             DiffusionDecoding(steps=4, sampler="random", cache="none", block_length=8, schedule="llada"))

def test_a_cells_identity_is_its_grid_columns_in_row_order_the_other_kinds_empty():
    ar = _cell(ARDecoding("static", 0.7, top_p=0.9))
    by_hand = {"model_name": "m-llama", "family": "llama", "kind": "autoregressive", "model_source": "ckpt",
               "prompt_len": 8, "n_out": 8, "batch_size": 1, "seq_len": 16, "precision": "fp32",
               "attention_backend": "sdpa", "temperature": 0.7, "steps": None, "sampler": None, "cache": None,
               "decode": "static", "block_length": None, "cfg_scale": None, "threshold": None, "schedule": None,
               "eps": None, "threshold_steps": None, "noise_layout": None, "forward": None, "leap_relaxed": None,
               "leap_window": None, "engine": "torch", "weights_format": None, "top_p": 0.9,
               "repetition_penalty": None}
    assert ar.identity() == by_hand and list(ar.identity()) == list(IDENTITY_COLUMNS)
    diffusion = _cell(DiffusionDecoding(steps=4, sampler="threshold", cache="dual", block_length=8, schedule="llada",
                                        threshold=0.9, threshold_steps="cap"))
    columns = diffusion.identity()
    assert (columns["steps"], columns["sampler"], columns["cache"], columns["threshold"], columns["decode"],
            columns["top_p"], columns["kind"]) == (4, "threshold", "dual", 0.9, None, None, "diffusion")
    assert diffusion.steps == 4 and ar.steps is None
    for cell in (ar, diffusion, _cell(ARDecoding(None), engine="llamacpp", weights_format="q8_0")):
        again = Cell.from_record(cell.identity(), SETTINGS.as_dict(), cell.model)
        assert again == cell and again.cell_id("cpu: x") == cell.cell_id("cpu: x")


def test_every_field_of_a_cell_and_its_decodings_is_a_grid_column_once():
    import dataclasses

    from dlm_bench.config import GRID_COLUMNS

    fields = [f.name for f in dataclasses.fields(Cell) if f.name not in ("model", "settings", "decoding")]
    for decoding in (DiffusionDecoding, ARDecoding):
        fields += [f.name for f in dataclasses.fields(decoding) if f.name not in fields]  # temperature: both kinds
    assert sorted(fields) == sorted(GRID_COLUMNS) and len(set(GRID_COLUMNS)) == len(GRID_COLUMNS)

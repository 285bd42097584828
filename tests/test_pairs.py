"""The pairs step: which ratios are paired, how a pair is timed, and the ratio read from it."""

import json
import random
import statistics

import pandas as pd
import pytest
import yaml


from dlm_bench.selection.pairs import WantedPair, paired_ratio, wanted_pairs
from dlm_bench.selection.parity import parity_table
from dlm_bench.cli import main
from dlm_bench.measure.loop import time_pair


def test_paired_ratio_is_the_median_of_per_pair_ratios():
    # per-pair ratios 2, 2, 3, 4, 2 -> median 2. A resample's median (5 draws, each 2 with p = 0.6, 3 or 4 with
    # p = 0.2) is 2 with probability P(at least 3 twos) = 0.683 > 2.5% and 4 with P(at least 3 fours) = 0.058 > 2.5%,
    # so the exact 95% interval is [2, 4]
    est = paired_ratio([100, 200, 300, 400, 50], [50, 100, 100, 100, 25], resamples=1000)
    assert (est.value, est.ci_low, est.ci_high) == (2.0, 2.0, 4.0)
    # the median of each arm would give 200 / 100 = 2 as well, but only pairing sees that the ratio is stable
    steady = paired_ratio([10, 1000, 10, 1000], [5, 500, 5, 500], resamples=200)
    assert steady.value == steady.ci_low == steady.ci_high == 2.0


class DriftingMachine:
    """A fake clock whose machine slows down linearly with every generation (a job starting beside ours)."""

    def __init__(self, slope):
        self.n, self.slope = 0, slope

    def cost(self, base_ms):
        self.n += 1
        return base_ms * (1 + self.slope * self.n)


class FakeArm:
    def __init__(self, name, base_ms, machine, log):
        self.name, self.base_ms, self.machine, self.log = name, base_ms, machine, log

    def warm_up(self, count):
        for _ in range(count):
            self.generate_ms(None)

    def generate_ms(self, clock):
        self.log.append(self.name)
        return self.machine.cost(self.base_ms)


def test_pairs_interleave_both_arms_in_a_random_order_per_pair():
    log = []
    machine = DriftingMachine(0.0)
    timing = time_pair(FakeArm("R", 20.0, machine, log), FakeArm("C", 10.0, machine, log), repeats=40, warmup=2,
                       clock=None, rng=random.Random(3))
    order, ref, con = timing.order, timing.reference_ms, timing.contender_ms
    assert log[:4] == ["R", "R", "C", "C"]  # warm-ups first, untimed
    timed = log[4:]
    pairs = ["".join(timed[i:i + 2]) for i in range(0, len(timed), 2)]
    assert order == "".join(pairs) and set(pairs) == {"RC", "CR"}  # each pair one of each arm, both orders occur
    assert 10 <= pairs.count("RC") <= 30 and len(ref) == len(con) == 40


def test_pairing_cancels_a_drifting_machine_that_sequential_cells_do_not():
    # the reference costs 2x the contender; the machine slows by 2% per generation
    machine = DriftingMachine(0.02)
    timing = time_pair(FakeArm("R", 20.0, machine, []), FakeArm("C", 10.0, machine, []), repeats=30, warmup=0,
                       clock=None, rng=random.Random(0))
    ref, con = timing.reference_ms, timing.contender_ms
    assert paired_ratio(ref, con).value == pytest.approx(2.0, rel=0.03)
    sequential = DriftingMachine(0.02)
    a = [sequential.cost(20.0) for _ in range(30)]  # one cell, then the other, as two grid cells are run
    b = [sequential.cost(10.0) for _ in range(30)]
    assert statistics.median(a) / statistics.median(b) < 1.5  # the unpaired ratio is off by more than 25%


def _rows():
    """Merged rows by hand: an AR model (eager, static) and a diffusion model (two caches, K 8 and 16) at N=64."""
    base = {"status": "ok", "seq_len": 64, "weights": "pretrained", "hardware": "h", "latency_ms_cv": 0.01,
            "repeats": 5}
    rows = [
        dict(base, cell_id="ae1", model_name="ar", kind="autoregressive", decode="eager", batch_size=1,
             latency_ms_median=100.0, bertscore_f1_mean=0.8, bertscore_f1_ci_low=0.79, bertscore_f1_ci_high=0.81),
        dict(base, cell_id="as1", model_name="ar", kind="autoregressive", decode="static", batch_size=1,
             latency_ms_median=60.0, bertscore_f1_mean=0.8, bertscore_f1_ci_low=0.79, bertscore_f1_ci_high=0.81),
    ]
    for cache, f1s, lat in (("none", (0.72, 0.85), (40.0, 80.0)), ("dual", (0.75, 0.82), (20.0, 30.0))):
        for k, f1, ms in zip((8, 16), f1s, lat):
            rows.append(dict(base, cell_id=f"d{cache}{k}", model_name="dl", kind="diffusion", sampler="low_confidence",
                             cache=cache, steps=k, batch_size=1, latency_ms_median=ms, bertscore_f1_mean=f1,
                             bertscore_f1_ci_low=f1 - 0.1, bertscore_f1_ci_high=f1 + 0.1))
    return pd.DataFrame(rows)


def scores_of(*frames: pd.DataFrame, prompts: int = 16) -> dict:
    """Per-prompt scores for rows by hand (quality_metrics.json's shape): each prompt scores the row's mean exactly,
    and the first round(share * prompts) prompts are degenerate where the row gives a share."""
    quality = {}
    for frame in frames:
        for _, r in frame.iterrows():
            if pd.isna(r.get("bertscore_f1_mean", float("nan"))):
                continue
            share = r.get("degenerate_mean", float("nan"))
            flags = {} if pd.isna(share) else {"degenerate": None}
            per_prompt = []
            for i in range(prompts):
                row = {"passage_id": f"p{i}", "bertscore_f1": float(r["bertscore_f1_mean"])}
                if flags:
                    row["degenerate"] = float(i < round(share * prompts))
                per_prompt.append(row)
            quality[str(r["cell_id"])] = {"per_prompt": per_prompt}
    return quality


def test_the_wanted_pairs_are_the_ratios_the_summary_publishes():
    rows = _rows()
    quality = scores_of(rows)
    wanted = wanted_pairs(rows, parity_table(rows, quality=quality), ["speedup", "fast_paths"], quality=quality)
    assert wanted == [
        # as published: eager vs low_confidence/none at S_parity 16 (0.85 - 0.80 on every prompt, inside the margin;
        # K=8's 0.72 is 0.08 short, beyond it)
        WantedPair("speedup", "ae1", "dnone16"),
        # at their best: static (60 ms) against dual at its S_parity 16 (30 ms < none's 80 ms)
        WantedPair("speedup", "as1", "ddual16"),
        # fast paths at N=64, B=1, K=16: static vs eager, dual vs none
        WantedPair("fast_paths", "ae1", "as1"), WantedPair("fast_paths", "dnone16", "ddual16")]
    assert wanted_pairs(rows, parity_table(rows, quality=quality), [], quality=quality) == []
    # without per-prompt scores no K can be tested: no parity, so no Speedup Factor to time
    assert [w.kind for w in wanted_pairs(rows, parity_table(rows), ["speedup", "fast_paths"])] == ["fast_paths"] * 2


def _engine_rows(*rows):
    """llama.cpp AR rows of model `ar` at N=64, B=1: (cell id, weights format, median ms)."""
    return pd.DataFrame([{"cell_id": cid, "status": "ok", "model_name": "ar", "kind": "autoregressive",
                          "engine": "llamacpp", "weights_format": fmt, "precision": "fp32", "seq_len": 64,
                          "batch_size": 1, "latency_ms_median": ms} for cid, fmt, ms in rows])


def test_both_sides_at_their_best_take_an_engine_ar_path_only_when_it_is_the_fastest():
    from dlm_bench.selection.pairs import best_parity_rows

    rows = _rows()
    parity = parity_table(rows, quality=scores_of(rows))
    # torch static (60 ms) is the fastest AR path when llama.cpp f32 takes 75 ms; q8_0 at 10 ms is quantized
    slower = _engine_rows(("lf32", "f32", 75.0), ("lq8", "q8_0", 10.0))
    (row,) = best_parity_rows(parity, slower).itertuples()
    assert (row.ar_path, row.ar_cell_id) == ("static", "as1")
    # llama.cpp f32 at 15 ms is the fastest at the sweep's precision: it is the AR side, named with its weights
    faster = _engine_rows(("lf32", "f32", 15.0), ("lq8", "q8_0", 10.0))
    (row,) = best_parity_rows(parity, faster).itertuples()
    assert (row.ar_path, row.ar_cell_id, row.ar_latency_ms) == ("llamacpp:f32", "lf32", 15.0)
    assert row.diffusion_cell_id == "ddual16" and not row.paired
    # quantized weights are the headline only when the config asks
    (row,) = best_parity_rows(parity, faster, quantized=True).itertuples()
    assert (row.ar_path, row.ar_cell_id) == ("llamacpp:q8_0", "lq8")
    # the pair to time is the engine cell against the diffusion cell, and its ratio is read from that pair; the
    # PyTorch-only pairing (static against dual) is timed beside it
    wanted = wanted_pairs(rows, parity, ["speedup"], faster, quality=scores_of(rows))
    assert wanted == [WantedPair("speedup", "ae1", "dnone16"), WantedPair("speedup", "lf32", "ddual16"),
                      WantedPair("speedup", "as1", "ddual16")]
    pairs = pd.DataFrame([{"status": "ok", "reference_cell_id": "lf32", "contender_cell_id": "ddual16",
                           "reference_ms_all": "15;16;14", "contender_ms_all": "30;32;28",
                           "load_1m_before": 0.1, "load_1m_after": 0.1}])
    (row,) = best_parity_rows(parity, faster, pairs).itertuples()
    assert row.paired and row.speedup_factor == pytest.approx(0.5) and row.fewest_repeats == 3


def _engine_diffusion_rows(*rows):
    """llama.cpp diffusion rows of model `dl` at N=64, B=1: (cell id, K, BERTScore F1, median ms, degenerate)."""
    return pd.DataFrame([{"cell_id": cid, "status": "ok", "model_name": "dl", "kind": "diffusion",
                          "engine": "llamacpp", "weights_format": "f32", "precision": "fp32", "sampler": "random",
                          "seq_len": 64, "batch_size": 1, "steps": k, "latency_ms_median": ms,
                          "bertscore_f1_mean": f1, "degenerate_mean": degenerate}
                         for cid, k, f1, ms, degenerate in rows])


def test_both_sides_at_their_best_take_an_engine_diffusion_path_that_reaches_parity_and_is_faster():
    from dlm_bench.selection.pairs import best_parity_rows

    rows = _rows()  # the torch best: dual at its S_parity 16 (0.82 against AR 0.80), 30 ms
    quality = scores_of(rows)
    parity = parity_table(rows, quality=quality)

    def best(parity_rows, engine):
        return best_parity_rows(parity_rows, engine, quality={**quality, **scores_of(engine)}).itertuples()

    # the engine path is at parity first at K=16 (0.81, tested on its own prompts), in 25 ms: it is the diffusion
    # side, with its own K
    reaching = _engine_diffusion_rows(("e8", 8, 0.70, 5.0, 0.0), ("e16", 16, 0.81, 25.0, 0.0))
    (row,) = best(parity, reaching)
    assert (row.diffusion_path, row.diffusion_cell_id, row.s_parity) == ("llamacpp:f32 random", "e16", 16)
    assert row.diffusion_quality_curve == "8:0.7;16:0.81" and row.ar_cell_id == "as1" and not row.paired
    assert row.parity_tests == "8:fail;16:pass" and row.confirmation == "confirmed"
    assert WantedPair("speedup", "as1", "e16") in wanted_pairs(rows, parity, ["speedup"], reaching,
                                                                quality={**quality, **scores_of(reaching)})
    # faster but never within the margin of the AR's quality (0.75), or slower than the torch path: the torch path
    for engine in (_engine_diffusion_rows(("e8", 8, 0.70, 5.0, 0.0), ("e16", 16, 0.75, 6.0, 0.0)),
                   _engine_diffusion_rows(("e16", 16, 0.81, 35.0, 0.0))):
        (row,) = best(parity, engine)
        assert (row.diffusion_path, row.diffusion_cell_id) == ("low_confidence/dual", "ddual16")
    # a K whose outputs repeat themselves more often than the AR model's cannot reach parity (the AR model has no
    # per-prompt flags here: the shares are compared)
    degenerate = _engine_diffusion_rows(("e16", 16, 0.81, 25.0, 0.5))
    (row,) = best(parity.assign(ar_degenerate=0.1), degenerate)
    assert row.diffusion_cell_id == "ddual16"
    (row,) = best(parity.assign(ar_degenerate=0.6), degenerate)
    assert row.diffusion_cell_id == "e16"
    # both sides on engines: the pair is the two engine cells
    both = pd.concat([_engine_rows(("lf32", "f32", 15.0)), reaching], ignore_index=True)
    (row,) = best(parity, both)
    assert (row.ar_cell_id, row.diffusion_cell_id) == ("lf32", "e16")


def test_a_pair_whose_engine_arm_fails_is_an_error_record_and_the_next_pair_is_measured(mini_config):
    import torch

    from dlm_bench.config import load_experiment
    from dlm_bench.engines import EngineError
    from dlm_bench.generation import GenerationTrace
    from dlm_bench.measure.clock import PerfCounterClock
    from dlm_bench.measure.load import LoadGuard
    from dlm_bench.measure.loop import Arm
    from dlm_bench.sweep.pairs import PairArm, measure_pair
    from dlm_bench.results import PairRecord

    class Quick:
        def generate(self, ids, n_out, *, steps=None, marker=None):
            return GenerationTrace(output_ids=torch.zeros(1, n_out, dtype=torch.long), marks=[], forward_passes=1,
                                   steps_executed=1)

    class Dead:
        def generate(self, ids, n_out, *, steps=None, marker=None):
            raise EngineError("llama-server is not running (exit 1): out of memory")

    exp = load_experiment(mini_config)
    ids = torch.zeros(1, 4, dtype=torch.long)

    def make_arm(cell):
        return PairArm(Arm(Dead() if cell == "engine" else Quick(), ids, 2), 2, cell == "engine")

    def record(pid):
        return PairRecord(pid, "speedup", "error", exp.name, "h", "a", "b", "a", "b", 64, 1, 1)

    guard = LoadGuard(exp.load_guard)
    failed = measure_pair(record("p1"), make_arm, "torch", "engine", exp, PerfCounterClock(), torch.device("cpu"),
                          guard)
    assert failed.status == "error" and failed.error == "EngineError: llama-server is not running (exit 1): out of memory"
    ok = measure_pair(record("p2"), make_arm, "torch", "torch", exp, PerfCounterClock(), torch.device("cpu"), guard)
    assert ok.status == "ok" and len(ok.reference_ms) == exp.pairs.repeats and ok.reference_threads == 2


def test_a_ratio_is_published_only_from_its_pair(tmp_path):
    rows = _rows()
    unpaired = parity_table(rows, quality=scores_of(rows))
    strict = unpaired[(unpaired["ar_decode"] == "eager") & (unpaired["cache"] == "none")].iloc[0]
    assert strict["s_parity"] == 16 and not strict["paired"] and pd.isna(strict["speedup_factor"])
    pairs = pd.DataFrame([{"status": "ok", "reference_cell_id": "ae1", "contender_cell_id": "dnone16",
                           "reference_ms_all": "100;110;90", "contender_ms_all": "50;50;50",
                           "load_1m_before": 0.1, "load_1m_after": 0.2}])
    paired = parity_table(rows, pairs, quality=scores_of(rows))
    strict = paired[(paired["ar_decode"] == "eager") & (paired["cache"] == "none")].iloc[0]
    # per-pair ratios 2.0, 2.2, 1.8 -> median 2.0, CV 0.2 / 2.0
    assert strict["paired"] and strict["speedup_factor"] == pytest.approx(2.0)
    assert strict["ratio_cv"] == pytest.approx(0.1) and strict["fewest_repeats"] == 3
    assert strict["speedup_factor_ci_low"] >= 1.8 and strict["speedup_factor_ci_high"] <= 2.2


def _pairs_config(tiny_models, tmp_path, **pairs):
    from conftest import mini_config_dict

    data = mini_config_dict(tiny_models, tmp_path)
    data["grid"] = {"batch_size": [1], "seq_len": [32], "steps": [8]}
    data["diffusion"] = {"block_length": 8, "cache": ["none", "dual"]}
    data["autoregressive"] = {"decode": ["eager", "static"]}
    data["pairs"] = {"repeats": 6, "warmup": 1, **pairs}
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.integration
@pytest.mark.slow
def test_the_pairs_step_measures_resumes_and_feeds_the_summary(tiny_models, tmp_path, caplog):
    path = _pairs_config(tiny_models, tmp_path)
    assert main(["--config", str(path), "--no_figure", "--log_level", "INFO"]) == 0
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "raw" / "pairs").glob("*.json"))]
    # no quality pass here, so the fast paths (static vs eager, dual vs none) and the torch self-pair
    assert sorted((r["kind"], r["reference"], r["contender"]) for r in records) == [
        ("fast_paths", "tiny-llada B=1 N=32 K=8 low_confidence/none", "tiny-llada B=1 N=32 K=8 low_confidence/dual"),
        ("fast_paths", "tiny-llama B=1 N=32 eager", "tiny-llama B=1 N=32 static"),
        ("self", "tiny-llada B=1 N=32 K=8 low_confidence/none", "tiny-llada B=1 N=32 K=8 low_confidence/none")]
    for r in records:
        assert r["status"] == "ok" and len(r["reference_ms"]) == len(r["contender_ms"]) == 6
        assert len(r["order"]) == 12 and all(r["order"][i:i + 2] in ("RC", "CR") for i in range(0, 12, 2))
        assert r["load"]["load_1m_before"] >= 0 and min(r["reference_ms"] + r["contender_ms"]) > 0
    table = pd.read_csv(tmp_path / "raw" / "pairs.csv")
    assert len(table) == 3 and set(table["pairs"]) == {6}
    caplog.clear()
    caplog.set_level("INFO")
    assert main(["--config", str(path), "pairs", "--no_figure", "--log_level", "INFO"]) == 0
    assert "3 measured before, 0 measured now" in caplog.text
    from dlm_bench.analysis.data import load_results
    from dlm_bench.analysis.summary import fast_path_table

    text = fast_path_table(load_results(tmp_path / "raw"))
    assert "not paired" not in text and text.count("reference") == 2


@pytest.mark.integration
def test_no_pairs_step_when_the_config_asks_for_none(tiny_models, tmp_path):
    path = _pairs_config(tiny_models, tmp_path, measure=[])
    assert main(["--config", str(path), "--no_figure"]) == 0
    assert not (tmp_path / "raw" / "pairs").exists()
    from dlm_bench.analysis.data import load_results
    from dlm_bench.analysis.summary import fast_path_table

    assert fast_path_table(load_results(tmp_path / "raw")).count("not paired") == 2


def test_a_step_count_whose_outputs_degenerate_more_than_the_ar_ones_cannot_reach_parity():
    rows = _rows()
    rows["degenerate_mean"] = 0.25  # the AR cells and every diffusion cell: 4 of 16 prompts degenerate ...
    rows.loc[rows["cell_id"] == "dnone16", "degenerate_mean"] = 0.9  # ... but 14 of 16 at K=16 without cache
    table = parity_table(rows, quality=scores_of(rows))
    strict = table[(table["ar_decode"] == "eager") & (table["cache"] == "none")].iloc[0]
    # K=16 (0.85) is excluded as degenerate (paired flags: 10 of 16 prompts more, none fewer) and K=8 (0.72) is
    # beyond the margin: not reached
    assert strict["degenerate_steps"] == "16" and not strict["reached"] and strict["parity_outcome"] == "not reached"
    dual = table[(table["ar_decode"] == "eager") & (table["cache"] == "dual")].iloc[0]
    assert dual["degenerate_steps"] == "" and dual["s_parity"] == 16


def test_the_load_check_passes_overlapping_or_flagged_ratios_and_fails_a_confident_disagreement():
    from conftest import load_script

    check = load_script("check_under_load")
    base = {"seq_len": 64, "batch_size": 1, "metric": "bertscore_f1", "paired": True, "reached": True,
            "parity_outcome": "reached",
            "diffusion_cell_id": "d", "ratio_cv": 0.01, "fewest_repeats": 10, "load_change": 0.1}
    quiet = pd.DataFrame([dict(base, speedup_factor=2.0, speedup_factor_ci_low=1.9, speedup_factor_ci_high=2.1)])

    def loaded(low, high, **extra):
        return pd.DataFrame([dict(base, speedup_factor=(low + high) / 2, speedup_factor_ci_low=low,
                                  speedup_factor_ci_high=high, **extra)])

    assert [ok for _, ok in check.compare(quiet, loaded(2.05, 2.6))] == [True]  # overlapping CIs
    assert [ok for _, ok in check.compare(quiet, loaded(3.0, 3.4))] == [False]  # a confident, different answer
    contended = "during: other processes used 1.00 CPU cores (limit 0.3)"
    flagged = check.compare(quiet, loaded(3.0, 3.4, contention=contended))  # the loaded run says why not
    assert flagged[0][1] and "flagged: no verdict" in flagged[0][0]


@pytest.mark.integration
@pytest.mark.parametrize("study", ["cpu_mini_synthetic", "cpu_austen_trained", "cpu_austen_engines"])
def test_the_pairs_step_chooses_from_the_records_what_the_analysis_chooses_from_the_table(study):
    """The pairs step never reads raw_metrics.csv back: its rows come from the records through the one loader
    (results.rows_frame), which reads them exactly as the analysis reads the committed table, and the selection
    picks the same pairs from both."""
    from conftest import ROOT
    from dlm_bench.results import ResultStore, read_rows, rows_frame
    from dlm_bench.selection.baseline import split_engines

    folder = ROOT / "results" / "raw_data" / study
    records, table = rows_frame(ResultStore(folder).records()), read_rows(folder / "raw_metrics.csv")
    pd.testing.assert_frame_equal(records, table)
    from_records, from_table = split_engines(records)[0], split_engines(table)[0]
    kinds = ["speedup", "fast_paths"]
    chosen = wanted_pairs(from_records, parity_table(from_records), kinds)
    assert chosen == wanted_pairs(from_table, parity_table(from_table), kinds)
    assert chosen or study == "cpu_austen_engines"  # the engines study's ratios are per-prompt engine pairs


def test_the_cells_ratio_beside_a_pair_is_flagged_only_where_the_two_do_not_overlap():
    from dlm_bench.selection.pairs import cell_ratio

    ar = pd.Series({"latency_ms_median": 100.0, "latency_ms_min": 95.0, "latency_ms_max": 110.0})
    dl = pd.Series({"latency_ms_median": 50.0, "latency_ms_min": 48.0, "latency_ms_max": 55.0})
    cells = cell_ratio(ar, dl)
    # by hand: 100 / 50 = 2; the span 95 / 55 = 1.727 .. 110 / 48 = 2.292
    assert cells.value == 2.0 and cells.low == pytest.approx(95 / 55) and cells.high == pytest.approx(110 / 48)
    assert not cells.disagrees(1.9, 2.1)  # inside
    assert not cells.disagrees(1.5, 1.8)  # overlapping at the low end
    assert cells.disagrees(1.2, 1.6) and cells.disagrees(2.4, 2.6)  # wholly below / above the cells' span
    assert not cells.disagrees(float("nan"), 2.0)


def test_self_pairs_calibrate_each_engine_and_a_torch_arm_beside_an_engine():
    from dlm_bench.selection.pairs import WantedPair, self_pairs

    rows = pd.DataFrame([{"cell_id": "ar_torch", "engine": "torch"}, {"cell_id": "dl_torch", "engine": "torch"},
                         {"cell_id": "ar_llama", "engine": "llamacpp", "weights_format": "f32"},
                         {"cell_id": "dl_other", "engine": "torch"}])
    published = [WantedPair("speedup", "ar_torch", "dl_torch"), WantedPair("speedup", "ar_llama", "dl_torch"),
                 WantedPair("fast_paths", "dl_torch", "dl_other")]
    assert self_pairs(published, rows) == [WantedPair("self", "ar_torch", "ar_torch"),
                                           WantedPair("self", "ar_llama", "ar_llama"),
                                           WantedPair("self", "dl_torch", "dl_torch", beside="ar_llama")]
    assert self_pairs(published[:1], rows) == [WantedPair("self", "ar_torch", "ar_torch")]  # torch only: no beside


def test_a_self_pair_fails_when_its_ci_excludes_1_or_something_beside_it_took_the_cpu():
    from dlm_bench.selection.pairs import measured_self_pairs

    def pair(ref, con, other=None):
        row = {"kind": "self", "status": "ok", "reference": "x", "beside": "", "reference_ms_all":
               ";".join(map(str, ref)), "contender_ms_all": ";".join(map(str, con)), "reference_cell_id": "x",
               "contender_cell_id": "x"}
        if other is not None:
            row["reference_other_cpu_ms_all"] = row["contender_other_cpu_ms_all"] = ";".join(map(str, other))
        return row

    flat = [100.0, 101.0, 99.0, 100.0, 102.0, 98.0]
    table = pd.DataFrame([pair(flat, list(reversed(flat))), pair([110.0] * 6, [100.0] * 6),
                          pair(flat, flat, other=[0.0] * 6), pair(flat, flat, other=[50.0] * 6)])
    found = measured_self_pairs(table, resamples=200)
    assert [p.passes for p in found] == [True, False, True, False]
    assert found[1].estimate.ci_low == pytest.approx(1.1)  # every pair 1.1: the CI excludes 1
    assert found[3].other_cores == pytest.approx(0.5) and found[3].interfered  # 50 ms of CPU per 100 ms run


def test_bisection_adds_the_middle_valid_k_until_the_bracket_is_within_the_resolution():
    from dlm_bench.selection.refine import middle_step, refinement

    assert middle_step(4, 16, 1) == 10 and middle_step(4, 16, 4) == 8  # 10 is no multiple of 4: 8 and 12 tie, lower
    assert middle_step(8, 16, 4) == 12 and middle_step(12, 16, 4) is None and middle_step(4, 6, 2) is None

    def row(n, tests, s_parity, sampler="random", cache="dual"):
        return pd.Series({"reached": True, "s_parity": s_parity, "parity_tests": tests, "seq_len": n,
                          "diffusion_model": "dl", "sampler": sampler, "cache": cache, "forward": "eager"})

    # N = 256 (N_out 128, block 32: K a multiple of 4): 4 fails, 16 passes -> 8; then 8 fails -> 12; then stop
    assert refinement([row(256, "4:fail;16:pass;128:pass", 16)], 4, 32) == {("dl", 256, "random", "dual", "eager"): {8}}
    assert refinement([row(256, "4:fail;8:fail;16:pass", 16)], 4, 32) == {("dl", 256, "random", "dual", "eager"): {12}}
    assert refinement([row(256, "4:fail;8:fail;12:undecided;16:pass", 16)], 4, 32) == {}
    # 8 passes: the bracket is (4, 8], within the resolution
    assert refinement([row(256, "4:fail;8:pass;16:pass", 8)], 4, 32) == {}
    # N = 64 (one block): any K; the smallest K passing, or no parity: nothing to bisect
    assert refinement([row(64, "4:fail;16:pass", 16)], 4, 32) == {("dl", 64, "random", "dual", "eager"): {10}}
    assert refinement([row(64, "4:pass;16:pass", 4)], 4, 32) == {}
    assert refinement([pd.Series({"reached": False, "s_parity": None})], 4, 32) == {}


def test_cells_a_refinement_adds_are_measured_at_every_b_and_found_again_from_their_rows(tiny_models, tmp_path):
    from conftest import mini_config_dict, write_config
    from dlm_bench.config import expand_cells, load_experiment
    from dlm_bench.selection.refine import steps_beyond_the_grid

    data = mini_config_dict(tiny_models, tmp_path)
    data["grid"] = {"batch_size": [1, 2], "seq_len": [32], "steps": [4, 8]}
    exp = load_experiment(write_config(tmp_path, data))
    plain = expand_cells(exp)
    extra = {("tiny-llada", 32, "low_confidence", "none", "eager"): {6, 8}}  # 8 is in the grid already
    cells = expand_cells(exp, extra)
    added = [c for c in cells if c not in plain]
    assert sorted((c.batch_size, c.steps) for c in added) == [(1, 6), (2, 6)]
    assert [c.cell_id("cpu") for c in cells[:len(plain)]] == [c.cell_id("cpu") for c in plain]
    rows = pd.DataFrame([{"kind": "diffusion", "status": "ok", "seq_len": 32, "steps": c.steps, **c.identity()}
                         for c in cells if c.kind == "diffusion"]).loc[:, lambda d: ~d.columns.duplicated()]
    assert steps_beyond_the_grid(rows, exp.grid.steps_for) == {("tiny-llada", 32, "low_confidence", "none",
                                                                 "eager"): {6}}


@pytest.mark.integration  # the study's config checks that its prompt file (the prepared Austen corpus) exists
def test_the_arms_are_rebuilt_from_the_records_of_what_was_measured():
    import dataclasses

    from conftest import ROOT
    from dlm_bench.config import load_experiment
    from dlm_bench.sweep.pairs import cells_of_records
    from dlm_bench.results import PairStore, ResultStore

    exp = load_experiment(ROOT / "config" / "experiments_austen.yaml")
    records = ResultStore(exp.results_dir).records()
    cells = cells_of_records(records, exp, "cpu: AMD EPYC")
    # every record of the committed trained study (the bisection's cells beside the grid's) is its own cell again
    assert set(cells) == {r.cell_id for r in records} and len(cells) > 400
    assert all(cells[r.cell_id].identity() == r.identity for r in records)
    assert all({p.reference_cell_id, p.contender_cell_id} <= set(cells) for p in PairStore(exp.results_dir).records())
    # a record of other settings, of other hardware, of another model, or with a setting this version lacks: none
    r = records[0]
    others = [dataclasses.replace(r, settings={**r.settings, "seed": r.settings["seed"] + 1}),
              dataclasses.replace(r, hardware="cpu: another"),
              dataclasses.replace(r, identity={**r.identity, "model_name": "not-in-the-config"}),
              dataclasses.replace(r, settings={**r.settings, "a_later_setting": 1})]
    assert cells_of_records(others, exp, "cpu: AMD EPYC") == {}

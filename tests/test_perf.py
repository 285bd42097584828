"""The perf log and its gates: gate rules on hand-made entries, the append-only log, the CI gates on the
trained pair, and a deliberately slowed path turning a gate red."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlm_bench.config import ConfigError, build_validated, read_yaml
from dlm_bench.perf.gates import evaluate_gate
from dlm_bench.perf.log import append_entry, previous_entry, read_entries
from dlm_bench.perf.spec import GateSpec, PerfSpec

ROOT = Path(__file__).resolve().parent.parent


def _entry(speedup=1.5, low=1.2, high=1.8, tps=100.0, device="cpu", when="2026-01-01T00:00:00+00:00", rss=1.0):
    row = {"kind": "diffusion", "path": "low_confidence/dual", "batch_size": 1, "generations": 5, "latency_ms": 10.0,
           "tokens_per_s": tps, "step_ms_p50": 1.0, "step_ms_p99": 4.0, "step_p99_over_p50": 4.0,
           "steps_executed": 32, "speedup": speedup, "speedup_ci_low": low, "speedup_ci_high": high,
           "agreement": 0.9, "slowed": False, "baseline": False}
    return {"measured_at": when, "config": "c", "commit": "abc", "hardware": "cpu: X", "device": device, "threads": 2,
            "settings": {"diffusion_model": "d", "ar_model": "a", "prompt_len": 8, "n_out": 8, "steps": 4,
                         "block_length": 4, "pairs": 5, "warmup": 1},
            "rows": [row], "peak_rss_gib": rss}


def _gate(metric="speedup", **kw):
    return GateSpec(name="g", metric=metric, path="low_confidence/dual", batch_size=1, **kw)


@pytest.mark.parametrize("low,high,status", [(1.2, 1.8, "pass"), (0.9, 1.1, "undecided"), (0.5, 0.97, "fail")])
def test_a_paired_gate_passes_fails_or_is_undecided_by_where_its_ci_lies(low, high, status):
    result = evaluate_gate(_gate(at_least=1.0), _entry(speedup=(low + high) / 2, low=low, high=high), None)
    assert result.status == status
    assert result.failed == (status == "fail")  # a speed gate counts undecided as a pass by default
    if status == "fail":  # 1.0 - 0.97 = 0.03 below the bound
        assert "by 0.030 (3.0%)" in result.reason and result.line().startswith("FAIL: g (speedup of low_confidence/dual")
    if status == "undecided":
        assert result.line().startswith("UNDECIDED: g") and "counts as pass" in result.reason
        assert "PASS" not in result.line()


def _quality_entry(delta, low, high, prompts=8):
    entry = _entry()
    entry["rows"][0].update(quality_delta=delta, quality_delta_ci_low=low, quality_delta_ci_high=high,
                            quality_delta_prompts=prompts)
    return entry


@pytest.mark.parametrize("undecided, failed", [(None, True), ("fail", True), ("pass", False)])
@pytest.mark.parametrize("metric", ["quality_delta", "speedup"])
def test_each_outcome_and_both_undecided_settings_on_hand_built_entries(metric, undecided, failed):
    """Bound 'at least -0.05' on the quality delta and 'at least 1.0' on the speedup: a CI wholly above
    passes, wholly below fails, across it is undecided and counts as the gate says (unset: a quality gate
    fails, a speed gate passes)."""
    bound, entry = ((-0.05, _quality_entry) if metric == "quality_delta" else
                    (1.0, lambda v, lo, hi: _entry(speedup=v, low=lo, high=hi)))
    gate = _gate(metric, at_least=bound, undecided=undecided)
    above, below, across = entry(bound + 0.03, bound + 0.01, bound + 0.05), entry(bound - 0.03, bound - 0.05, bound - 0.01), \
        entry(bound + 0.01, bound - 0.02, bound + 0.04)
    assert (evaluate_gate(gate, above, None).status, evaluate_gate(gate, above, None).failed) == ("pass", False)
    assert (evaluate_gate(gate, below, None).status, evaluate_gate(gate, below, None).failed) == ("fail", True)
    result = evaluate_gate(gate, across, None)
    default_failed = failed if undecided is not None else metric == "quality_delta"
    assert result.status == "undecided" and result.failed == default_failed


def test_an_undecided_quality_gate_says_how_many_prompts_would_decide_it():
    from dlm_bench.perf.gates import prompts_to_decide

    # half-width 0.03 at 8 prompts, the value 0.029 from the bound: 8 * (0.03 / 0.029)^2 = 8.56 -> 9 prompts
    assert prompts_to_decide(8, (-0.109, -0.049), -0.079, -0.05) == 9
    assert prompts_to_decide(8, (-0.1, 0.0), -0.05, -0.05) is None  # on the bound: no count decides it
    result = evaluate_gate(_gate("quality_delta", at_least=-0.05), _quality_entry(-0.079, -0.109, -0.049), None)
    assert result.status == "undecided" and "about 9 prompts would decide it at this spread (measured over 8)" in \
        result.reason and "counts as fail" in result.reason


def test_an_upper_bound_straddled_by_its_ci_is_undecided():
    entry = _entry(speedup=1.0, low=0.9, high=1.1)
    assert evaluate_gate(_gate(at_most=1.05), entry, None).status == "undecided"
    assert evaluate_gate(_gate(at_most=1.2), entry, None).status == "pass"
    assert evaluate_gate(_gate(at_most=0.8), entry, None).status == "fail"


def test_an_upper_bound_reads_the_value_of_an_unpaired_metric():
    on_gpu = _entry(device="cuda")
    assert evaluate_gate(_gate("step_p99_over_p50", at_most=3.0), on_gpu, None).status == "fail"  # 4.0 > 3.0
    assert evaluate_gate(_gate("step_p99_over_p50", at_most=5.0), on_gpu, None).status == "pass"
    # a tail ratio on a shared CPU measures the neighbours: skipped there unless the gate asks for it anywhere
    assert evaluate_gate(_gate("step_p99_over_p50", at_most=3.0), _entry(), None).status == "skipped"
    assert evaluate_gate(_gate("step_p99_over_p50", at_most=3.0, absolute_on="any"), _entry(), None).status == "fail"


def test_absolute_gates_are_relative_to_the_previous_entry_and_skipped_on_a_cpu():
    gate = _gate("tokens_per_s", at_least=0.8, relative_to="previous")
    before, now = _entry(tps=100.0, device="cuda"), _entry(tps=70.0, device="cuda", when="2026-01-02T00:00:00+00:00")
    result = evaluate_gate(gate, now, before)
    assert result.status == "fail" and result.value == pytest.approx(0.7)
    assert evaluate_gate(gate, now, None).status == "skipped"
    assert evaluate_gate(gate, _entry(device="cpu"), _entry(device="cpu")).reason == "machine-dependent figures gate only on a GPU"
    anywhere = _gate("peak_rss_gib", at_most=1.2, relative_to="previous", absolute_on="any")
    assert evaluate_gate(anywhere, _entry(rss=1.5), _entry(rss=1.0)).status == "fail"


def test_the_entries_are_appended_and_the_markdown_is_rendered_from_all_of_them(tmp_path):
    from dlm_bench.perf.log import jsonl_path, render

    log = tmp_path / "perf_log.md"
    first, second = _entry(), _entry(speedup=2.0, when="2026-01-02T00:00:00+00:00")
    append_entry(log, first)
    lines = jsonl_path(log).read_text()
    append_entry(log, second)
    assert jsonl_path(log).read_text().startswith(lines)  # the measurements are only ever appended
    render(log, {"c": [_gate(at_least=1.0)]})
    text = log.read_text()
    assert text.count("## 2026-01-0") == 2
    entries = read_entries(log)
    assert [e["rows"][0]["speedup"] for e in entries] == [1.5, 2.0]
    assert previous_entry(entries, entries[1]) == entries[0] and previous_entry(entries, entries[0]) is None
    assert "| low_confidence/dual | 1 | 100.0 | 10.0 | 1.00 | 4.00 | 4.00 | 32 | 1.500 [1.200, 1.800] | 0.900 |" in text
    assert "- PASS: g (speedup of low_confidence/dual, B=1): 1.500 [1.200, 1.800], bound ≥ 1" in text
    # rendered again under a stricter gate, the same entries read as today's rules judge them
    render(log, {"c": [_gate(at_least=1.5)]})
    text = log.read_text()
    assert "- UNDECIDED: g (speedup of low_confidence/dual, B=1): 1.500 [1.200, 1.800], bound ≥ 1.5" in text
    assert "- PASS: g (speedup of low_confidence/dual, B=1): 2.000 [1.200, 1.800]" not in text
    render(log, {})
    assert log.read_text().count("Gates: not evaluated (config 'c' not found).") == 2


def test_the_committed_log_shows_no_pass_whose_ci_reaches_its_bound():
    """Every PASS line of results/perf_log.md with a CI has the whole CI on the good side of its bound."""
    import re

    pattern = re.compile(r"^- PASS: .*?: (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\], bound (≥|≤) (-?[\d.]+)")
    checked = 0
    for line in (ROOT / "results" / "perf_log.md").read_text().splitlines():
        match = pattern.match(line)
        if match:
            low, high, sign, bound = float(match[2]), float(match[3]), match[4], float(match[5])
            assert (low >= bound) if sign == "≥" else (high <= bound), line
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("change,message", [
    ({"diffusion_paths": ["low_confidence/none", "fastest/dual"]}, "diffusion path 'fastest/dual' is not allowed"),
    ({"ar_paths": ["eager", "turbo"]}, "ar_paths: 'turbo' is not allowed"),
    ({"gates": [{"name": "x", "metric": "speed", "path": "eager", "batch_size": 1, "at_least": 1}]},
     "gates[0] (x).metric: 'speed' is not allowed"),
    ({"gates": [{"name": "x", "metric": "speedup", "path": "static", "batch_size": 1, "at_least": 1}]},
     "gates[0] (x).path: 'static' is not in the matrix"),
    ({"gates": [{"name": "x", "metric": "speedup", "path": "eager", "batch_size": 4, "at_least": 1}]},
     "gates[0] (x).batch_size: 4 is not in the matrix"),
    ({"gates": [{"name": "x", "metric": "speedup", "path": "eager", "batch_size": 1}]}, "exactly one of at_least"),
    ({"steps": 3}, "steps: 3 is not a multiple of the number of blocks 4"),
    ({"pairs": 2}, "pairs: 2 is not allowed"),
    ({"prompt_len": 64}, "prompt_len: 64 differs from n_out = 128"),
    ({"leap_relaxed": 0.95}, "leap_threshold, leap_relaxed, leap_window: 0.9, 0.95, 4 are not allowed"),
    ({"gates": [{"name": "x", "metric": "agreement", "path": "static_compiled", "batch_size": 1, "at_least": 1,
                 "undecided": "pass"}]}, "gates[0] (x).undecided: 'pass' is not allowed; allowed: pass or fail on a paired"),
    ({"gates": [{"name": "x", "metric": "speedup", "path": "static_compiled", "batch_size": 1, "at_least": 1,
                 "undecided": "maybe"}]}, "gates[0] (x).undecided: 'maybe' is not allowed"),
    ({"quality_prompts": 1}, "quality_prompts: 1 is not allowed; allowed: integers >= 2"),
])
def test_a_bad_perf_config_names_the_field(change, message):
    raw = read_yaml(ROOT / "config" / "perf" / "ci.yaml")
    raw.update(change)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        build_validated(PerfSpec, raw)


def _perf_ci(*args, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/perf_ci.py", *args, "--config", "config/perf/ci.yaml",
                           "--log", str(log)], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.integration
def test_bad_arguments_exit_2_before_anything_loads(tmp_path):
    out = _perf_ci("perf", "--slow_path", "eager", log=tmp_path / "log.md")
    assert out.returncode == 2 and "--slow_path: 'eager' is a baseline" in out.stderr
    out = _perf_ci("gate", log=tmp_path / "log.md")
    assert out.returncode == 2 and "no entry of config 'perf_ci'" in out.stderr
    assert not (tmp_path / "log.md").exists()


@pytest.mark.integration
def test_a_missing_prompt_file_is_a_config_error(tmp_path):
    raw = read_yaml(ROOT / "config" / "perf" / "ci.yaml")
    raw["prompt_file"] = "data/no_such_prompts.txt"
    config = tmp_path / "perf.yaml"
    config.write_text(json.dumps(raw))  # JSON is YAML
    out = subprocess.run([sys.executable, "scripts/perf_ci.py", "perf", "--config", str(config), "--log",
                          str(tmp_path / "log.md")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "prompt_file: " in out.stderr and "no_such_prompts.txt not found" in out.stderr


@pytest.mark.evidence
@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "data" / "austen" / "prompts.txt").is_file(),
                    reason="the Austen corpus is not prepared (./test.sh prepares it; scripts/prepare_austen.py)")
def test_the_ci_gates_pass_on_the_trained_pair_and_a_slowed_path_fails_its_gate(tmp_path):
    log = tmp_path / "perf_log.md"
    out = _perf_ci("perf", log=log)
    assert out.returncode == 0, out.stderr[-3000:]
    gate = _perf_ci("gate", log=log)
    assert gate.returncode == 0, gate.stdout + gate.stderr[-2000:]
    # each speed gate passes or, on a loaded machine, is undecided (which counts as a pass for them)
    assert gate.stdout.count("PASS: ") + gate.stdout.count("UNDECIDED: ") == 3 and "FAIL: " not in gate.stdout
    slowed = _perf_ci("perf", "--slow_path", "low_confidence/dual", "--slow_factor", "4", log=log)
    assert slowed.returncode == 0, slowed.stderr[-3000:]
    gate = _perf_ci("gate", log=log)
    assert gate.returncode == 1
    assert "FAIL: dual cache at least as fast as no cache" in gate.stdout and "1 of 3 gates failed" in gate.stderr
    entries = [json.loads(line) for line in log.with_suffix(".jsonl").read_text().splitlines()]
    assert len(entries) == 2 and [r["slowed"] for r in entries[1]["rows"] if r["path"] == "low_confidence/dual"] == [True]
    assert log.read_text().count("## ") == 2 and "(slowed)" in log.read_text()


def test_a_perf_arm_records_timed_generations_only_and_reads_steps_from_the_marks():
    import torch

    from dlm_bench.generation import GenerationTrace
    from dlm_bench.measure.clock import PerfCounterClock
    from dlm_bench.perf.matrix import PerfArm

    class Stepper:
        """Four 'steps' whose marks the test sets: 1, 2, 3 and 10 ms after the start."""

        def __init__(self):
            self.calls = 0

        def generate(self, ids, n_out, steps=None, marker=None):
            self.calls += 1
            marks = [marker() for _ in range(4)] if marker else []
            return GenerationTrace(output_ids=torch.zeros(1, n_out, dtype=torch.long), marks=marks, forward_passes=4,
                                   steps_executed=4)

    class FakeClock(PerfCounterClock):
        def __init__(self):
            self.t = iter([0.0, 0.001, 0.002, 0.003, 0.010, 0.010])

        def mark(self):
            return next(self.t)

    arm = PerfArm(Stepper(), torch.zeros(1, 4, dtype=torch.long), 8, 4, kind="diffusion", path="low_confidence/dual")
    arm.warm_up()
    assert arm.generator.calls == 1 and arm.latencies_ms == [] and arm.step_ms == []
    assert arm.generate_ms(FakeClock()) == pytest.approx(10.0)
    assert arm.step_ms == pytest.approx([1.0, 1.0, 1.0, 7.0]) and arm.steps_executed == [4]
    figures = arm.figures()
    assert figures["tokens_per_s"] == pytest.approx(8 / 0.010) and figures["step_ms_p50"] == pytest.approx(1.0)


def test_quality_delta_gates_need_an_encoder_at_the_largest_batch_and_pass_only_on_the_whole_ci():
    raw = read_yaml(ROOT / "config" / "perf" / "austen.yaml")
    spec = build_validated(PerfSpec, raw)
    assert any(g.metric == "quality_delta" for g in spec.gates)
    with pytest.raises(ConfigError, match="quality_delta is scored at the largest batch size"):
        build_validated(PerfSpec, {**raw, "quality_encoder": None})
    with pytest.raises(ConfigError, match="quality_encoder: scoring needs true continuations"):
        build_validated(PerfSpec, {**raw, "prompt_file": None})
    gate = _gate("quality_delta", at_least=-0.05)
    straddling = evaluate_gate(gate, _quality_entry(-0.04, -0.09, 0.01), None)
    assert straddling.status == "undecided" and straddling.failed  # non-inferiority is not shown: a fail
    assert evaluate_gate(gate, _quality_entry(-0.12, -0.2, -0.06), None).status == "fail"
    assert evaluate_gate(gate, _quality_entry(-0.01, -0.03, 0.01), None).status == "pass"


def test_quality_delta_is_the_paired_bertscore_difference_on_the_same_prompts():
    import torch

    from dlm_bench.perf.matrix import quality_delta

    class Tok:
        def decode(self, ids, skip_special_tokens=False):
            return " ".join(f"w{i}" for i in ids)

    class Scorer:
        """F1 = share of the reference's words found in the candidate (a stand-in with a hand-computable value)."""

        def score(self, candidates, references):
            return [(0.0, 0.0, len(set(c.split()) & set(r.split())) / len(r.split())) for c, r in zip(candidates, references)]

    contender, baseline = torch.tensor([[1, 2], [3, 9]]), torch.tensor([[1, 9], [9, 9]])
    # per prompt: contender 1.0 and 0.5, baseline 0.5 and 0.0 -> differences 0.5 and 0.5
    est = quality_delta(Scorer(), Tok(), [[1, 2], [3, 4]], contender, baseline)
    assert est.value == pytest.approx(0.5) and est.ci_low == pytest.approx(0.5) and est.ci_high == pytest.approx(0.5)


def test_local_leap_paths_run_at_the_configured_knobs_and_the_threshold_path_keeps_its_own():
    import torch

    from types import SimpleNamespace

    from conftest import MASK, small_llada
    from dlm_bench.perf.matrix import perf_arm

    spec = build_validated(PerfSpec, read_yaml(ROOT / "config" / "perf" / "austen.yaml"))
    loaded = SimpleNamespace(model=small_llada(), mask_token_id=MASK)  # what make_generator reads of a LoadedModel
    ids = torch.zeros(1, 4, dtype=torch.long)
    leap = perf_arm(spec, loaded, "diffusion", "local_leap/dual", ids).generator
    assert (leap.settings.threshold, leap.settings.leap_relaxed, leap.settings.leap_window) == (0.2, 0.1, 4)
    assert leap.path.cache == "dual" and leap.settings.threshold_steps == "cap"
    assert perf_arm(spec, loaded, "diffusion", "threshold/dual", ids).generator.settings.threshold == 0.9


def test_each_path_of_the_matrix_is_a_grid_cell_of_its_kind():
    from dlm_bench.config import ARDecoding, DiffusionDecoding

    spec = build_validated(PerfSpec, read_yaml(ROOT / "config" / "perf" / "austen.yaml"))
    threshold = spec.cell("diffusion", "threshold/dual", 8, "fp32")
    # by hand from config/perf/austen.yaml: K 32, block 32, N = 128 + 128; the threshold sampler at its default 0.9,
    # steps as a budget
    assert threshold.decoding == DiffusionDecoding(steps=32, sampler="threshold", cache="dual", block_length=32,
                                                   schedule="llada", cfg_scale=0.0, threshold=0.9,
                                                   threshold_steps="cap", forward="eager")
    assert (threshold.batch_size, threshold.seq_len, threshold.n_out, threshold.model.path) == \
        (8, 256, 128, "checkpoints/austen/mdm")
    compiled = spec.cell("diffusion", "low_confidence/dual/compiled", 1, "fp32").decoding
    assert (compiled.forward, compiled.threshold, compiled.threshold_steps, compiled.leap_relaxed) == \
        ("compiled", None, None, None)
    ar = spec.cell("autoregressive", "static_compiled", 1, "bf16")
    assert ar.decoding == ARDecoding("static_compiled") and ar.path.label == "static_compiled"
    assert ar.model.path == "checkpoints/austen/ar" and ar.precision == "bf16" and ar.steps is None


def test_the_quality_pass_covers_every_prompt_in_batches_of_the_largest_batch():
    import torch

    from dlm_bench.generation import GenerationTrace
    from dlm_bench.perf.matrix import PerfArm, quality_outputs

    class Echo:
        """Continues each prompt with its first token + 100, twice; records the batch shapes it was given."""

        def __init__(self):
            self.shapes = []

        def generate(self, ids, n_out, steps=None, marker=None):
            self.shapes.append(tuple(ids.shape))
            return GenerationTrace(output_ids=(ids[:, :1] + 100).repeat(1, n_out), marks=[], forward_passes=1,
                                   steps_executed=1)

    echo = Echo()
    arm = PerfArm(echo, torch.zeros(2, 3, dtype=torch.long), 2, 4, kind="diffusion", path="low_confidence/dual")
    out = quality_outputs(arm, [[i, 0, 0] for i in range(5)], batch=2)
    assert echo.shapes == [(2, 3), (2, 3), (1, 3)]
    assert out.tolist() == [[100, 100], [101, 101], [102, 102], [103, 103], [104, 104]]

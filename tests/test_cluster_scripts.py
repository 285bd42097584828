import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.integration
def test_download_assets_local_only_lists_what_is_missing_and_never_prints_the_token(tmp_path):
    token = "hf_SECRETtoken1234567890"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": token,
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "scripts/download_assets.py", "--config", "config/experiments.yaml",
                          "--local-files-only", "--model-cache-dir", str(tmp_path / "models"),
                          "--dataset-cache-dir", str(tmp_path / "data"), "--extra-model-id", "openai-community/gpt2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 1
    for repo in ("meta-llama/Meta-Llama-3-8B", "GSAI-ML/LLaDA-8B-Base", "FacebookAI/roberta-large",
                 "openai-community/gpt2", "Salesforce/wikitext"):
        assert "checking" in text and repo in text
    assert "5 of 5 asset(s) missing" in text
    assert token not in text
    assert not list(tmp_path.rglob("*SECRET*"))


@pytest.mark.integration
def test_submit_dry_run_sizes_the_array_from_the_config():
    out = subprocess.run([sys.executable, "scripts/submit.py", "--config", "config/experiments.yaml", "--max_tasks",
                          "8", "--partition", "gpu", "--dry_run", "--", "--steps", "64", "--batch_size", "4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # 3 N x 1 B for LLaMA + 3 N x 1 B x 1 K for LLaDA = 6 cells -> 6 tasks
    assert "6 cells in 6 array task(s)" in out.stdout
    assert "--array=0-5" in out.stdout and "--partition=gpu" in out.stdout
    assert "benchmark_gpu.sbatch --steps 64 --batch_size 4" in out.stdout
    assert "--dependency=afterany:" in out.stdout and "finalize.sbatch" in out.stdout
    pairs_line = out.stdout.strip().splitlines()[-1]  # the pairs job: the shards' script, after the finalize job
    assert "DLM_COMMAND=pairs" in pairs_line and "--dependency=afterok:" in pairs_line
    assert "benchmark_gpu.sbatch --steps 64 --batch_size 4" in pairs_line and "--array" not in pairs_line


@pytest.mark.integration
def test_submit_refuses_a_bad_config_with_exit_2():
    out = subprocess.run([sys.executable, "scripts/submit.py", "--config", "config/experiments.yaml", "--dry_run", "--",
                          "--seq_len", "513"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "grid.seq_len: 513 is odd" in out.stderr


@pytest.mark.integration
@pytest.mark.parametrize("script", ["jobs/benchmark_gpu.sbatch", "jobs/benchmark_cpu.sbatch", "jobs/finalize.sbatch",
                                    "jobs/run_shard.sh", "jobs/env_bootstrap.sh", "scripts/setup_env.sh", "run.sh",
                                    "test.sh", ".ci/run"])
def test_shell_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(ROOT / script)]).returncode == 0


@pytest.mark.integration
def test_submit_shows_sbatchs_own_error(tmp_path):
    import os

    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = subprocess.run([sys.executable, "scripts/submit.py", "--config", "config/experiments.yaml", "--partition",
                          "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert out.returncode == 1 and "invalid partition specified: nope" in out.stderr and "Traceback" not in out.stderr

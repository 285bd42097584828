"""The GPU campaign script, exercised on the CPU with tiny models: budgeted, resumable, copied out."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, mini_config_dict

pytestmark = pytest.mark.integration


def _campaign(config, out, budget):
    env = {**os.environ, "DLM_CONFIG": str(config), "DLM_PYTHON": sys.executable, "OUT": str(out),
           "DLM_OVERHEAD_ARGS": "--batch_size 1 --seq_len 32 --steps 4"}
    return subprocess.run(["bash", "scripts/gpu_campaign.sh", str(budget)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=500)


def test_campaign_is_budgeted_resumable_and_works_in_the_output_folder(tiny_models, tmp_path):
    data = mini_config_dict(tiny_models, tmp_path)
    data["grid"] = {"batch_size": [1, 2], "seq_len": [32, 64], "steps": [4, 8]}
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(data))
    carried = tmp_path / "raw"  # the config's results folder: what the device tool carries back
    first = _campaign(config, tmp_path / "out1", budget=0)  # no time: one cell, the progress guarantee
    assert first.returncode == 0, first.stderr[-2000:]
    work1 = tmp_path / "out1" / "raw_data" / "raw"
    assert len(list(work1.glob("cells/*.json"))) == 1 and "11 cells left for the next run" in first.stderr
    assert not carried.exists()  # every file was written straight into the output folder
    assert json.loads((work1 / "calibration.json").read_text())  # ceilings measured once
    overhead = json.loads((work1 / "overhead.json").read_text())
    assert len(overhead["cells"]) == 2 and all(c["kernel_ms"] > 0 for c in overhead["cells"])
    assert (work1 / "raw_metrics.csv").exists()
    shutil.copytree(work1, carried)  # carry: the next call starts from what the last one handed back
    calibrated = (carried / "calibration.json").read_text()
    second = _campaign(config, tmp_path / "out2", budget=600)
    assert second.returncode == 0, second.stderr[-2000:]
    work2 = tmp_path / "out2" / "raw_data" / "raw"
    assert "1 already done" in second.stderr and (work2 / "calibration.json").read_text() == calibrated
    assert len(list(work2.glob("cells/*.json"))) == 12
    assert "12 of 12 cells have a record" in second.stdout
    assert (tmp_path / "out2" / "figures" / "fig" / "latency_throughput.png").exists()
    assert (work2 / "summary.md").exists()

"""The batch jobs on a real one-node SLURM cluster (munged, slurmctld, slurmd started here).

Skipped with the reason when the machine cannot run one (not root, slurm-wlm/munge missing);
`.ci/run` installs both. Daemons are stopped by PID at the end.
"""

import csv
import re
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, load_script, mini_config_dict

slurm = load_script("local_slurm_cluster")

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(slurm.missing_requirements() is not None,
                                 reason=f"no SLURM here: {slurm.missing_requirements()}")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = slurm.start(tmp_path_factory.mktemp("slurm"))
    yield c
    slurm.stop(c)


def submit(cluster, config: Path, *extra: str) -> list[str]:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "submit.py"), "--config", str(config), "--cpu",
                          *extra], env={**cluster.env, "DLM_VENV": sys.prefix}, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith(("array job", "finalize job", "pairs job"))]


def wait(cluster, job_ids: list[str], timeout_s: float = 420) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if not cluster.run("squeue", "-h", "-j", ",".join(job_ids), check=False).strip():
            return
        time.sleep(1)
    pytest.fail(f"jobs {job_ids} still queued after {timeout_s} s:\n{cluster.run('squeue', check=False)}")


def cell_records(raw: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((raw / "cells").glob("*.json"))]


def test_array_job_then_finalize_writes_every_cell_once(cluster, tiny_models, tmp_path):
    config = tmp_path / "mini.yaml"
    data = mini_config_dict(tiny_models, tmp_path)
    data["autoregressive"] = {"decode": ["eager", "static"]}  # one fast-path ratio for the pairs job
    config.write_text(yaml.safe_dump(data))
    jobs = submit(cluster, config, "--max_tasks", "3")
    assert len(jobs) == 3
    wait(cluster, jobs)
    raw = tmp_path / "raw"
    rows = list(csv.DictReader(open(raw / "raw_metrics.csv")))
    assert len(rows) == 8 and len({r["cell_id"] for r in rows}) == 8
    assert all(r["status"] == "ok" for r in rows)
    assert {r["env_slurm_array_task_id"] for r in rows} == {"0", "1", "2"}  # each task ran its own shard
    assert (tmp_path / "fig" / "latency_throughput.png").exists()  # drawn by the finalize job
    # the pairs job: static against eager, and its calibration, the first arm against itself
    pairs = {r["kind"]: r for r in csv.DictReader(open(raw / "pairs.csv"))}
    assert sorted(pairs) == ["fast_paths", "self"]
    repeats = str(data["pairs"]["repeats"])  # interleaved pairs per ratio, as configured
    assert [(r["status"], r["pairs"]) for r in pairs.values()] == [("ok", repeats)] * 2
    assert pairs["self"]["reference_cell_id"] == pairs["self"]["contender_cell_id"]
    assert pairs["self"]["reference_cell_id"] in {pairs["fast_paths"]["reference_cell_id"],
                                                  pairs["fast_paths"]["contender_cell_id"]}
    assert "speedup vs as-published, paired" in (raw / "summary.md").read_text()
    log = next((ROOT / "logs" / "slurm").glob(f"dlm-bench-cpu_{jobs[0]}_0.out")).read_text()
    assert "shard 0/3: 3 cells" in log


def test_cancelled_sweep_resumes_with_the_missing_cells_only(cluster, tiny_models, tmp_path):
    data = mini_config_dict(tiny_models, tmp_path)
    data["grid"] = {"batch_size": [1, 2, 4], "seq_len": [32, 64], "steps": [4, 8, 16]}
    data["timing"] = {"warmup": 2, "repeats": 15}
    config = tmp_path / "bigger.yaml"
    config.write_text(yaml.safe_dump(data))
    raw = tmp_path / "raw"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 1))  # as the logs' times read
    jobs = submit(cluster, config, "--max_tasks", "1", "--no_finalize")
    deadline = time.time() + 300
    while len(list((raw / "cells").glob("*.json"))) < 3 and time.time() < deadline:
        time.sleep(0.2)
    cluster.run("scancel", jobs[0])
    wait(cluster, jobs)
    before = {r["cell_id"]: r for r in cell_records(raw)}
    assert 3 <= len(before) < 24, "the cancel did not land midway"
    assert not list((raw / "cells").glob(".*.tmp"))  # no half-written record left behind
    jobs = submit(cluster, config, "--max_tasks", "2")
    wait(cluster, jobs)
    after = {r["cell_id"]: r for r in cell_records(raw)}
    assert len(after) == 24
    for cell_id, record in before.items():  # finished cells were not re-run
        assert after[cell_id]["started_at"] == record["started_at"]
        assert after[cell_id]["timing"] == record["timing"]
    rows = list(csv.DictReader(open(raw / "raw_metrics.csv")))
    assert sorted(r["cell_id"] for r in rows) == sorted(after)
    logs = "".join(p.read_text() for p in (ROOT / "logs" / "slurm").glob(f"dlm-bench-cpu_{jobs[0]}_*.out"))
    # this test's lines only: a restarted scheduler may reuse a job id, and its logs are appended to
    lines = re.findall(r"^(\S+ \S+),\d+ INFO dlm_bench\.sweep\.runner: shard \d+/\d+: \d+ cells, (\d+) already done",
                       logs, re.M)
    skipped = [int(n) for when, n in lines if when >= started]
    assert len(skipped) == 2 and sum(skipped) == len(before)  # both tasks skipped exactly the finished cells

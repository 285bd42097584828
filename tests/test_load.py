"""The load guard: other processes' CPU use from the counters, the bounded wait for quiet, the contended mark,
and (integration) a real CPU-burning neighbour seen by a sweep whose ratios then carry no verdict."""

import math
import subprocess
import sys
import time

import pytest
import yaml

from dlm_bench.config import LoadGuardSpec
from dlm_bench.measure import load
from dlm_bench.measure.load import CLOCK_TICKS, Interval, LoadGuard, LoadSample, between, busy_reason
from dlm_bench.results import QUIET, LoadStats, contended


def _sample(at_s, busy, own, steal=0, total=None, load_1m=0.5, gpu=math.nan):
    return LoadSample(at_s, load_1m, busy, steal, total if total is not None else 10 * busy + 1000, own, gpu)


def test_other_processes_cpu_is_the_busy_time_less_this_process_per_second():
    # 2 s apart: all CPUs busy for 3 s of CPU time, 1 s of it this process's -> others used 1 core on average
    before = _sample(10.0, busy=1000, own=200, total=5000)
    after = _sample(12.0, busy=1000 + 3 * CLOCK_TICKS, own=200 + CLOCK_TICKS, steal=20, total=5000 + 4 * CLOCK_TICKS)
    interval = between(before, after)
    assert interval.seconds == 2.0 and interval.other_cpu_cores == pytest.approx(1.0)
    assert interval.cpu_steal_pct == pytest.approx(100 * 20 / (4 * CLOCK_TICKS))


def test_a_process_that_used_more_than_the_machine_counted_is_clipped_at_zero_others():
    interval = between(_sample(0.0, busy=100, own=0), _sample(1.0, busy=110, own=30))
    assert interval.other_cpu_cores == 0.0


@pytest.mark.parametrize("cores, steal, gpu, expected", [
    (0.1, 0.0, math.nan, None),
    (0.5, 0.0, math.nan, "other processes used 0.50 CPU cores (limit 0.3)"),
    (0.0, 25.0, math.nan, "the hypervisor stole 25% of the CPU time (limit 10%)"),
    (0.0, 0.0, 1.0, "1 other processes on the GPU (limit 0)"),
])
def test_busy_reasons_name_the_limit_they_cross(cores, steal, gpu, expected):
    assert busy_reason(Interval(1.0, cores, steal, gpu, 0.0, 0.0), LoadGuardSpec()) == expected


class ScriptedMachine:
    """Probes that report the given other-process cores in turn; sleeping advances a fake clock."""

    def __init__(self, cores):
        self.cores, self.slept = list(cores), []

    def sleep(self, s):
        self.slept.append(s)


def _guard(machine, monkeypatch, **spec):
    guard = LoadGuard(LoadGuardSpec(**spec), sleep=machine.sleep)
    probes = iter(machine.cores)
    monkeypatch.setattr(guard, "probe", lambda pids=(): Interval(spec.get("probe_s", 0.5), next(probes), 0.0,
                                                                   math.nan, 0.0, 0.0))
    now = [0.0]

    def monotonic():
        now[0] = sum(machine.slept)
        return now[0]

    monkeypatch.setattr(load.time, "monotonic", monotonic)
    return guard


def test_the_guard_waits_while_busy_and_measures_when_quiet_comes(monkeypatch):
    machine = ScriptedMachine([1.0, 1.0, 0.05])
    guard = _guard(machine, monkeypatch, poll_s=2.0, wait_s=60.0)
    quiet = guard.wait_for_quiet("cell x")
    assert quiet.busy is None and quiet.waited_s == 4.0 and machine.slept == [2.0, 2.0]
    assert guard.judge(quiet, Interval(1.0, 0.0, 0.0, math.nan, 0.0, 0.0)) == QUIET


def test_a_wait_is_bounded_per_measurement_and_per_run_and_then_marks_contended(monkeypatch):
    machine = ScriptedMachine([1.0] * 20)
    guard = _guard(machine, monkeypatch, poll_s=2.0, wait_s=5.0, wait_budget_s=7.0)
    first = guard.wait_for_quiet("cell a")
    assert machine.slept == [2.0, 2.0, 1.0] and first.waited_s == 5.0
    assert first.busy == "other processes used 1.00 CPU cores (limit 0.3)"
    second = guard.wait_for_quiet("cell b")  # only 2 s of the run's budget is left
    assert machine.slept[3:] == [2.0] and second.waited_s == 2.0
    third = guard.wait_for_quiet("cell c")  # the budget is spent: no wait at all
    assert third.waited_s == 0.0 and len(machine.slept) == 4
    verdict = guard.judge(first, Interval(1.0, 0.0, 0.0, math.nan, 0.0, 0.0))
    assert verdict == "before: other processes used 1.00 CPU cores (limit 0.3) after waiting 5 s"
    assert contended(verdict) and not contended(QUIET) and not contended("")


def test_load_during_a_measurement_marks_it_contended_only_when_it_lasted_long_enough_to_judge(monkeypatch):
    guard = _guard(ScriptedMachine([0.0, 0.0]), monkeypatch)
    quiet = guard.wait_for_quiet("cell a")
    long_busy = Interval(2.0, 0.9, 0.0, math.nan, 0.0, 0.0)
    assert guard.judge(quiet, long_busy) == "during: other processes used 0.90 CPU cores (limit 0.3)"
    assert guard.judge(quiet, Interval(0.1, 0.9, 0.0, math.nan, 0.0, 0.0)) == QUIET  # 10 ticks: too coarse
    stats = guard.stats(quiet, long_busy)
    assert isinstance(stats, LoadStats) and stats.contended and stats.other_cpu_cores == 0.9
    assert stats.other_cpu_cores_before == 0.0 and stats.waited_for_quiet_s == 0.0


def test_a_switched_off_guard_neither_probes_nor_waits_nor_marks(monkeypatch):
    machine = ScriptedMachine([])
    guard = _guard(machine, monkeypatch, enabled=False)
    quiet = guard.wait_for_quiet("cell a")
    assert machine.slept == [] and quiet.busy is None
    assert guard.stats(quiet, Interval(1.0, 2.0, 0.0, math.nan, 0.0, 0.0)).contention == ""


def _burner() -> subprocess.Popen:
    """A neighbour that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])


@pytest.mark.integration
def test_a_real_cpu_burning_neighbour_is_seen_and_the_guard_gives_up_after_its_wait():
    burner = _burner()
    try:
        time.sleep(0.3)
        guard = LoadGuard(LoadGuardSpec(probe_s=0.5, poll_s=0.5, wait_s=1.0))
        quiet = guard.wait_for_quiet("cell")
        assert quiet.busy is not None and quiet.probe.other_cpu_cores > 0.6 and quiet.waited_s >= 1.0
        # the burner's CPU is this measurement's own when it is named as the engine's process
        own = guard.probe(own_pids=(burner.pid,))
        assert own.other_cpu_cores < 0.5
    finally:
        burner.kill()
        burner.wait()


@pytest.mark.integration
def test_a_sweep_beside_a_burning_neighbour_marks_cells_and_pairs_contended_and_gives_no_verdict(
        tiny_models, tmp_path):
    from conftest import mini_config_dict

    cfg = mini_config_dict(tiny_models, tmp_path)
    cfg["grid"] = {"batch_size": [1], "seq_len": [32], "steps": [4, 8]}
    cfg["autoregressive"] = {"decode": ["eager", "static"]}  # a fast-path pair: static against eager
    cfg["quality"] = {"judge_path": str(tiny_models["llama"]), "bootstrap_resamples": 50}
    cfg["load_guard"] = {"probe_s": 0.3, "poll_s": 0.3, "wait_s": 0.6, "wait_budget_s": 3.0}
    config = tmp_path / "guarded.yaml"
    config.write_text(yaml.safe_dump(cfg))
    burner = _burner()
    try:
        out = subprocess.run([sys.executable, "-m", "dlm_bench", "--config", str(config), "--no_figure"],
                             capture_output=True, text=True, timeout=600)
    finally:
        burner.kill()
        burner.wait()
    assert "the machine is busy" in out.stderr and "waiting up to" in out.stderr
    assert "still busy after" in out.stderr and "marked contended" in out.stderr
    import pandas as pd

    from dlm_bench.analysis.data import load_results
    from dlm_bench.analysis.summary import summary_markdown

    rows = pd.read_csv(tmp_path / "raw" / "raw_metrics.csv")
    ok = rows[rows["status"] == "ok"]
    assert len(ok) and ok["contention"].str.startswith("before: other processes used").all()
    pairs = pd.read_csv(tmp_path / "raw" / "pairs.csv")
    assert len(pairs) and pairs["contention"].map(contended).all()
    text = summary_markdown(load_results(tmp_path / "raw"))
    assert "## Contended measurements" in text and "--remeasure_contended" in text
    assert "(contended: no verdict)" in text  # the fast-path ratios
    assert "diffusion faster at equal quality" not in text and "autoregressive faster at equal quality" not in text
    # on a quiet machine, --remeasure_contended measures them again, and only them
    again = subprocess.run([sys.executable, "-m", "dlm_bench", "--config", str(config), "--no_figure",
                            "--remeasure_contended"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = pd.read_csv(tmp_path / "raw" / "raw_metrics.csv")
    assert (rows.loc[rows["status"] == "ok", "contention"] == QUIET).all()
    assert (pd.read_csv(tmp_path / "raw" / "pairs.csv")["contention"] == QUIET).all()

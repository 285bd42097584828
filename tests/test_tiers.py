"""The test tiers of pytest.ini: every test is in exactly one, and the trained pair's and llama.cpp's
tests are evidence, so `./test.sh -m unit` needs neither."""

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.integration


def _collected(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {line for line in out.stdout.splitlines() if "::" in line}


def test_every_test_is_in_exactly_one_tier():
    every = _collected()
    tiers = {t: _collected("-m", t) for t in ("unit", "integration", "evidence")}
    assert sum(len(t) for t in tiers.values()) == len(every)
    assert set().union(*tiers.values()) == every
    assert all(n.startswith(("tests/test_austen.py", "tests/test_llamacpp.py", "tests/test_perf.py"))
               for n in tiers["evidence"])
    assert not any(n.startswith(("tests/test_austen.py", "tests/test_llamacpp.py", "tests/test_slurm.py"))
                   for n in tiers["unit"])


def test_a_unit_test_that_starts_a_process_or_a_sweep_fails():
    probe = ROOT / "tests" / f"test_zz_tier_probe_{__import__('os').getpid()}.py"
    probe.write_text("import subprocess\n\n\ndef test_starts_a_process():\n    subprocess.run(['true'])\n\n\n"
                     "def test_runs_a_sweep():\n    from dlm_bench.sweep.runner import run_experiment\n"
                     "    run_experiment(None)\n\n\ndef test_in_process():\n    assert sum([1, 2]) == 3\n")
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    finally:
        probe.unlink()
    assert "2 failed, 1 passed" in out.stdout, out.stdout[-2000:]
    assert "a unit test starts a process; mark it integration" in out.stdout
    assert "a unit test runs a sweep; mark it integration" in out.stdout

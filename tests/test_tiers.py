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

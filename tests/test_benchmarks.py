"""Benchmark targets: the verdict rule, the targets file, and the summary rows built from it."""

import json

import pytest

from dlm_bench.measure.benchmarks import TargetResult, read_targets, record_targets, write_report


def _target(name="t", goal=1.3, higher=True, value=1.4, low=1.35, high=1.5):
    return TargetResult(name, goal, higher, value, low, high, "detail", "scripts/x.py", "cpu: X", "2026-01-01T00:00:00+00:00",
                        "abc123")


@pytest.mark.parametrize("higher,value,low,high,verdict", [
    (True, 1.4, 1.31, 1.5, "met"),  # the whole CI above the goal
    (True, 1.2, 1.1, 1.29, "missed"),  # the whole CI below
    (True, 1.35, 1.25, 1.45, "undecided"),  # the CI straddles 1.3
    (False, 1.01, 1.0, 1.02, "met"),  # lower is better: the whole CI under the goal of 1.3
    (False, 1.5, 1.4, 1.6, "missed"),
    (False, 1.3, 1.2, 1.35, "undecided"),
    (True, 1.3, None, None, "met"),  # a share without a CI: the value itself, at the goal
    (True, 0.2, None, None, "missed"),
])
def test_a_verdict_needs_the_whole_ci_on_one_side_of_the_goal(higher, value, low, high, verdict):
    assert _target(higher=higher, value=value, low=low, high=high).verdict.startswith(verdict)


def test_recording_replaces_a_target_of_the_same_name_and_keeps_the_others(tmp_path):
    path = tmp_path / "sub" / "benchmarks.json"
    record_targets(path, [_target("a", value=1.0), _target("b")])
    record_targets(path, [_target("a", value=2.0)])
    raw = json.loads(path.read_text())
    assert [(r["name"], r["value"]) for r in raw] == [("a", 2.0), ("b", 1.4)]
    assert read_targets(tmp_path / "none.json") == []


def test_a_report_goes_to_its_file_or_to_stdout(tmp_path, capsys):
    write_report("# table\n", tmp_path / "report.md")
    assert (tmp_path / "report.md").read_text() == "# table\n"
    assert capsys.readouterr().out == f"written: {tmp_path / 'report.md'}\n"
    write_report("# table\n", None)
    assert capsys.readouterr().out == "# table\n\n"


def test_the_summary_lists_the_recorded_targets_with_their_verdicts(tmp_path):
    from dlm_bench.analysis.data import load_results
    from dlm_bench.analysis.summary import summary_markdown
    from test_analysis import make_results

    root = make_results(tmp_path / "raw")
    record_targets(root / "benchmarks.json", [_target("compiled diffusion forward vs eager, x/dual", value=1.2,
                                                      low=1.1, high=1.25)])
    text = summary_markdown(load_results(root))
    row = next(line for line in text.splitlines() if "compiled diffusion forward vs eager, x/dual" in line)
    assert "≥ 1.3" in row and "1.200 [1.100, 1.250]" in row and row.rstrip(" |").endswith("missed")


@pytest.mark.integration
@pytest.mark.slow
def test_bench_targets_measures_and_records_every_target_of_its_groups(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    record, table = tmp_path / "raw" / "benchmarks.json", tmp_path / "targets.md"
    small = ["--model_dir", str(tmp_path / "models"), "--d_model", "32", "--n_layers", "1", "--prompt_length", "8",
             "--gen_length", "8", "--block_length", "4", "--steps", "4", "--pairs", "3", "--warmup", "1",
             "--copy_mib", "4"]
    out = subprocess.run([sys.executable, "scripts/bench_targets.py", *small, "--only", "ar", "overhead",
                          "--output", str(table), "--record", str(record)], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    names = [r["name"] for r in json.loads(record.read_text())]
    assert names == ["AR static_compiled decode vs eager generate, B = 1",
                     "AR static_compiled decode: weight bytes per token / time per token, share of copy bandwidth",
                     "harness overhead: runner's timed repetition / bare generation, diffusion low_confidence/dual",
                     "harness overhead: runner's timed repetition / bare generation, AR static"]
    text = table.read_text()
    assert all(f"| {n} |" in text for n in names) and "tokens agreeing 1.000" in text
    bad = subprocess.run([sys.executable, "scripts/bench_targets.py", *small[:10], "--steps", "3"], cwd=root,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--steps" in bad.stderr


@pytest.mark.integration
def test_the_commit_is_dirty_for_changed_code_and_clean_for_new_measurements(tmp_path):
    import subprocess

    from dlm_bench.measure.environment import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "log.md").write_text("# log\n")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "results" / "log.md").write_text("# log\n\n## an entry\n")  # what a measurement writes
    git_commit.cache_clear()
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    git_commit.cache_clear()
    assert git_commit(tmp_path) == clean + "-dirty"

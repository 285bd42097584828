"""Tasks as a quality source: HumanEval and GSM8K problems and checkers, the sandbox's limits, accuracy, its
paired comparison, AUP, the config section, and the task pass end to end on the tiny models."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, mini_config_dict

from dlm_bench.config import ConfigError, load_experiment
from dlm_bench.tasks import Problem, TaskFileError, cut_at_stop, load_task
from dlm_bench.tasks import gsm8k, humaneval
from dlm_bench.tasks.accuracy import aup, aup_weight, compare, tokens_per_forward
from dlm_bench.tasks.sandbox import Limits, run_program

ADD = {"task_id": "toy/0", "entry_point": "add",
       "prompt": 'def add(a, b):\n    """The sum of a and b."""\n',
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}
LIMITS = Limits(time_s=3, memory_mb=256)


def write_humaneval(path, rows, compress=False) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)


# --------------------------------------------------------------------------- stop sequences and GSM8K


def test_cut_at_the_earliest_stop_sequence():
    assert cut_at_stop("    return a\ndef other():\n", humaneval.STOP) == "    return a"
    assert cut_at_stop("abc", ("x",)) == "abc"
    assert cut_at_stop("one Question: two\nQuestion:", gsm8k.STOP) == "one "
    assert cut_at_stop("ab", ("", "b")) == "a"  # an empty stop sequence cuts nothing


@pytest.mark.parametrize("text, number", [("so she has 1,234 apples", "1234"), ("It costs $5.50.", "5.5"),
                                          ("first 3 then 42", "42"), ("-7 degrees", "-7"), ("10.0", "10"),
                                          ("no digits here", None)])
def test_final_number(text, number):
    assert gsm8k.final_number(text) == number


def test_gsm8k_prompt_shots_and_exact_match(tmp_path):
    test = tmp_path / "test.jsonl"
    shots = tmp_path / "train.jsonl"
    test.write_text(json.dumps({"question": "Ann has 2 pens and buys 3. How many?", "answer": "2+3=5\n#### 5"}) + "\n"
                    + json.dumps({"question": "What is 10 times 100?", "answer": "#### 1,000"}) + "\n")
    shots.write_text(json.dumps({"question": "What is 1 plus 1?", "answer": "1+1=2\n#### 2"}) + "\n")
    task = gsm8k.load(test, n_shot=1, shots_file=shots)
    first = task.problems[0]
    assert first.prompt == ("Question: What is 1 plus 1?\nAnswer: 1+1=2 The answer is 2.\n\n"
                            "Question: Ann has 2 pens and buys 3. How many?\nAnswer:")
    assert task.problems[1].data["reference"] == "1000"
    assert task.check(first, task.cut(" 2 and 3 make 5.\n\nQuestion: next")).correct
    wrong = task.check(first, " 2 and 3 make 6.")
    assert not wrong.correct and wrong.reason == "6 != 5"
    assert task.check(task.problems[1], "The answer is 1,000.").correct
    with pytest.raises(TaskFileError, match="n_shot: 3 examples asked, the train file has 1"):
        gsm8k.load(test, n_shot=3, shots_file=shots)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"question": "no answer here"}) + "\n")
    with pytest.raises(TaskFileError, match="broken.jsonl:1: missing string field\\(s\\) answer; a GSM8K line has "
                                            "question, answer"):
        gsm8k.load(broken)


def test_gsm8k_without_its_dataset_names_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(TaskFileError, match="download_assets.py"):
        gsm8k.load(None, cache_dir=str(tmp_path))


# --------------------------------------------------------------------------- HumanEval files


def test_humaneval_reads_its_format_and_builds_the_program(tmp_path):
    path = tmp_path / "he.jsonl.gz"
    write_humaneval(path, [ADD], compress=True)
    (problem,) = humaneval.read_problems(path)
    assert problem.problem_id == "toy/0" and problem.data["entry_point"] == "add"
    program = humaneval.program_of(problem, "    return a + b\n")
    assert program.startswith(ADD["prompt"] + "    return a + b\n") and program.endswith("check(add)\n")


def test_humaneval_refuses_a_line_without_its_fields(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"task_id": "x", "prompt": "p"}) + "\n")
    with pytest.raises(TaskFileError, match="bad.jsonl:1: missing string field\\(s\\) test, entry_point"):
        humaneval.read_problems(path)


def test_the_packaged_humaneval_has_its_164_problems():
    problems = humaneval.read_problems(humaneval.packaged_file())
    assert len(problems) == 164
    assert problems[0].problem_id == "HumanEval/0" and problems[-1].problem_id == "HumanEval/163"


# --------------------------------------------------------------------------- accuracy, comparison, AUP


def test_tokens_per_forward():
    assert tokens_per_forward(64, 16) == 4.0
    assert math.isnan(tokens_per_forward(64, 0))


def test_paired_comparison_counts_discordant_problems_and_tests_them_exactly():
    ar = {f"p{i}": i < 2 for i in range(10)}  # solves p0, p1
    diffusion = {f"p{i}": i < 8 for i in range(10)}  # solves p0..p7: 6 only it solved, none only AR
    c = compare(diffusion, ar, margin=0.05, resamples=200)
    assert (c.only_diffusion, c.only_ar) == (6, 0)
    assert c.p_value == pytest.approx(2 / 2 ** 6)  # two-sided exact: 2 * (1/2)^6
    assert c.test.difference.value == pytest.approx(0.6)
    assert c.test.outcome == "pass" and c.test.prompts == 10
    worse = compare(ar, diffusion, margin=0.05, resamples=200)  # the other way round: 0.6 points worse
    assert worse.test.difference.value == pytest.approx(-0.6) and worse.test.outcome == "fail"
    half = compare(diffusion, ar, margin=0.05, problems=frozenset({"p0", "p9"}), resamples=200)
    assert half.test.prompts == 2 and (half.only_diffusion, half.only_ar) == (0, 0) and half.p_value == 1.0


def test_aup_by_hand():
    assert aup_weight(50, 50) == 1.0 and aup_weight(48, 50) == pytest.approx(math.exp(-0.12))
    # (4, 40) lies more than 5 points below the first point's 50 and is left out
    expected = 1 * 50 + (2 - 1) * (48 * math.exp(-3 * (1 - 48 / 50)) + 50 * 1.0) / 2
    assert aup([(2, 48), (1, 50), (4, 40)], y_max=50) == pytest.approx(expected)
    assert aup([(1, 60)], y_max=80) == pytest.approx(60)
    assert math.isnan(aup([], 50)) and math.isnan(aup([(1, 0)], 0))


# --------------------------------------------------------------------------- the config section


def _config(tiny_models, tmp_path, tasks) -> dict:
    data = mini_config_dict(tiny_models, tmp_path)
    data["tasks"] = tasks
    return data


def _load(tmp_path, data):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_experiment(path)


@pytest.mark.parametrize("task, message", [
    ({"name": "mmlu"}, "tasks\\[0\\] \\(mmlu\\).name: 'mmlu' is not allowed"),
    ({"name": "humaneval", "gen_tokens": 12}, "tasks\\[0\\] \\(humaneval\\).gen_tokens: 12 tokens at K = 4"),
    ({"name": "humaneval", "n_shot": 2}, "n_shot: solved examples are a gsm8k option"),
    ({"name": "humaneval", "time_s": 0}, "time_s: 0.0 is not allowed"),
    ({"name": "gsm8k", "parity_margin": 1.5}, "parity_margin: 1.5 is not allowed"),
    ({"name": "gsm8k", "file": "nowhere.jsonl"}, "tasks\\[0\\] \\(gsm8k\\).file: file not found"),
])
def test_bad_task_entries_name_their_field(tiny_models, tmp_path, task, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, _config(tiny_models, tmp_path, [task]))


def test_a_task_given_twice_is_refused(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="given twice"):
        _load(tmp_path, _config(tiny_models, tmp_path, [{"name": "gsm8k"}, {"name": "gsm8k"}]))


def test_load_task_keeps_the_first_problems(tiny_models, tmp_path):
    path = tmp_path / "he.jsonl"
    write_humaneval(path, [ADD, {**ADD, "task_id": "toy/1"}, {**ADD, "task_id": "toy/2"}])
    exp = _load(tmp_path, _config(tiny_models, tmp_path, [{"name": "humaneval", "file": str(path), "gen_tokens": 16,
                                                           "max_problems": 2}]))
    task = load_task(exp.tasks[0], exp.base_dir)
    assert [p.problem_id for p in task.problems] == ["toy/0", "toy/1"] and exp.tasks[0].answer_tokens == 16


# --------------------------------------------------------------------------- the sandbox (child processes)

BAD_COMPLETIONS = {
    "loops forever": ("    while True:\n        pass\n", "timeout (3 s)"),
    "allocates without bound": ("    x = []\n    while True:\n        x.append(bytearray(10 ** 7))\n",
                                "memory (256 MiB)"),
    "spawns a process": ("    import subprocess\n    subprocess.run(['true'])\n    return a + b\n",
                         "forbidden: subprocess.Popen"),
    "forks": ("    import os\n    os.fork()\n    return a + b\n", "forbidden: os.fork"),
    "writes outside its folder": ("    open('/tmp/dlm-bench-sandbox-escape', 'w').write('x')\n    return a + b\n",
                                  "forbidden: writing '/tmp/dlm-bench-sandbox-escape'"),
    "opens a socket": ("    import socket\n    socket.create_connection(('127.0.0.1', 9))\n    return a + b\n",
                       "forbidden: socket.getaddrinfo"),
    "catches the refusal": ("    try:\n        import socket; socket.socket()\n    except BaseException:\n"
                            "        pass\n    return a + b\n", "forbidden: socket.__new__"),
}


@pytest.mark.integration
def test_each_bad_completion_fails_its_problem_within_its_limits_and_the_run_goes_on():
    problem = Problem("toy/0", ADD["prompt"], {"test": ADD["test"], "entry_point": "add"})
    check = humaneval.checker(LIMITS)
    assert check(problem, "    return a + b\n").correct
    assert check(problem, "    return a - b\n").reason == "exit code 1: AssertionError"
    for what, (completion, reason) in BAD_COMPLETIONS.items():
        outcome = check(problem, completion)
        assert not outcome.correct and outcome.reason == reason, what
    assert not __import__("os").path.exists("/tmp/dlm-bench-sandbox-escape")
    assert check(problem, "    return b + a\n").correct  # and the next problem is checked as ever


@pytest.mark.integration
def test_the_sandbox_kills_what_the_program_left_behind_and_its_folder():
    slow = run_program("import time\ntime.sleep(30)\n", Limits(time_s=1))
    assert not slow.passed and slow.reason == "timeout (1 s)" and slow.wall_s < 5
    inside = run_program("import os\nopen('mine.txt', 'w').write('x')\nprint(os.getcwd())\n", LIMITS)
    assert inside.passed  # its own folder is writable
    leftover = list(__import__("pathlib").Path(__import__("tempfile").gettempdir()).glob("dlm-bench-sandbox-*"))
    assert leftover == []


# --------------------------------------------------------------------------- the task pass, end to end


@pytest.mark.integration
def test_the_task_pass_answers_every_problem_with_every_quality_cell(tiny_models, tmp_path):
    path = tmp_path / "he.jsonl"
    write_humaneval(path, [ADD, {**ADD, "task_id": "toy/1"}])
    data = _config(tiny_models, tmp_path, [{"name": "humaneval", "file": str(path), "gen_tokens": 16,
                                            "time_s": 3, "memory_mb": 512}])
    data["grid"] = {"batch_size": [1], "seq_len": [32], "steps": [4, 8]}
    data["pairs"] = {"measure": []}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(data))
    run = subprocess.run([sys.executable, "-m", "dlm_bench", "run", "--config", str(config), "--log_level", "WARNING"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    outcomes = json.loads((tmp_path / "raw" / "task_outcomes.json").read_text())
    by_model = {}
    for entry in outcomes.values():
        t = entry["tasks"]["humaneval"]
        assert [r["problem_id"] for r in t["per_problem"]] == ["toy/0", "toy/1"]
        assert t["accuracy"]["mean"] == sum(r["correct"] for r in t["per_problem"]) / 2
        assert all(r["tokens"] == 16 and r["reason"] for r in t["per_problem"] if not r["correct"])
        by_model.setdefault(entry["identity"]["model_name"], {})[entry["identity"]["steps"]] = t["tokens_per_forward"]
    # AR: one token per forward; LLaDA's low_confidence sampler: 16 tokens over K forwards
    assert by_model == {"tiny-llama": {None: 1.0}, "tiny-llada": {4: 4.0, 8: 2.0}}
    summary = (tmp_path / "raw" / "summary.md").read_text()
    assert "## Task accuracy" in summary and "S_parity on accuracy (margin 5 points)" in summary
    table = (tmp_path / "raw" / "task_metrics.csv").read_text().splitlines()
    assert len(table) == 1 + 3
    again = subprocess.run([sys.executable, "-m", "dlm_bench", "tasks", "--config", str(config)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 (cell, task) answered and checked, 3 cells done before" in again.stderr


@pytest.mark.integration
def test_a_missing_task_file_stops_the_run_before_any_model_loads(tiny_models, tmp_path):
    data = _config(tiny_models, tmp_path, [{"name": "humaneval", "file": str(tmp_path / "he.jsonl"),
                                            "gen_tokens": 16}])
    (tmp_path / "he.jsonl").write_text("{not json}\n")
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(data))
    run = subprocess.run([sys.executable, "-m", "dlm_bench", "run", "--config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "he.jsonl:1: not valid JSON" in run.stderr
    assert not (tmp_path / "raw" / "raw_metrics.csv").exists()

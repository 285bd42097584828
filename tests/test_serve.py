"""`dlm-bench serve`: requests checked field by field (HTTP 400 naming the field), answers as the generation
path gives them, AR log-probabilities against the model's own forward pass, and the server driven over
loopback by lm-eval's local-completions model and by the harness's own openai engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import torch
import yaml

from conftest import ROOT, mini_config_dict

from dlm_bench.config import load_experiment
from dlm_bench.generation.cell_generator import make_generator
from dlm_bench.models.loader import LoadSettings, load_model
from dlm_bench.serve import RequestError, ServedPath, pick_cell


def _exp(tiny_models, tmp_path):
    data = mini_config_dict(tiny_models, tmp_path)
    data["grid"] = {"batch_size": [1], "seq_len": [32], "steps": [4, 8]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_experiment(path), path


def _served(exp, model: str, **options) -> ServedPath:
    cell = pick_cell(exp, model, {"steps": None, "sampler": None, "cache": None, "decode": None, **options})
    spec = next(m for m in exp.models if m.name == model)
    loaded = load_model(spec, torch.device("cpu"), LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir))
    return ServedPath(cell, loaded)


@pytest.fixture(scope="module")
def paths(tiny_models, tmp_path_factory):
    exp, _ = _exp(tiny_models, tmp_path_factory.mktemp("serve"))
    return exp, _served(exp, "tiny-llada", steps=4), _served(exp, "tiny-llama")


@pytest.mark.parametrize("body, field", [
    ({"prompt": "a", "max_tokens": 16, "foo": 1}, "foo"),
    ({"prompt": "a", "max_tokens": 16, "model": "other"}, "model"),
    ({"max_tokens": 16}, "prompt"),
    ({"prompt": [1.5], "max_tokens": 16}, "prompt"),
    ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "a", "max_tokens": 12}, "max_tokens"),  # 12 is no multiple of the block length 8
    ({"prompt": "a", "max_tokens": 16, "n": 2}, "n"),
    ({"prompt": "a", "max_tokens": 16, "temperature": -1}, "temperature"),
    ({"prompt": "a", "max_tokens": 16, "logprobs": 1}, "logprobs"),  # a diffusion path has none
    ({"prompt": "a", "max_tokens": 16, "top_p": 0.9}, "top_p"),
    ({"prompt": "a", "max_tokens": 16, "stop": 3}, "stop"),
    ({"prompt": "a", "max_tokens": 16, "echo": True}, "echo"),
])
def test_a_request_the_diffusion_path_cannot_honour_names_its_field(paths, body, field):
    _, diffusion, _ = paths
    with pytest.raises(RequestError) as err:
        diffusion.complete(body)
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")


def test_answers_are_the_cells_own_generations(paths):
    exp, diffusion, ar = paths
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12]]
    answers, settings, prompt_tokens = diffusion.complete({"prompt": prompts, "max_tokens": 16, "ignore_eos": True})
    assert prompt_tokens == 8 and settings["seed"] == exp.seed
    torch.manual_seed(exp.seed)
    direct = make_generator(diffusion.cell, diffusion.loaded).generate(torch.tensor(prompts), 16, steps=4)
    assert [a.token_ids for a in answers] == direct.output_ids.tolist()
    assert all(a.finish_reason == "length" and len(a.token_ids) == 16 for a in answers)
    (one,), _, _ = ar.complete({"prompt": [prompts[0]], "max_tokens": 5, "ignore_eos": True})
    torch.manual_seed(exp.seed)
    assert one.token_ids == make_generator(ar.cell, ar.loaded).generate(torch.tensor(prompts[:1]), 5).output_ids[0].tolist()


def test_stop_sequences_cut_the_answer(paths):
    _, _, ar = paths
    (full,), _, _ = ar.complete({"prompt": "the", "max_tokens": 8, "ignore_eos": True})
    assert len(full.text) > 2
    stop = full.text[2:4]
    (cut,), _, _ = ar.complete({"prompt": "the", "max_tokens": 8, "ignore_eos": True, "stop": [stop]})
    assert cut.text == full.text[:full.text.index(stop)] and cut.finish_reason == "stop"


def test_ar_logprobs_match_the_models_forward_pass(paths):
    _, _, ar = paths
    prompt = [3, 4, 5, 6]
    (a,), _, _ = ar.complete({"prompt": prompt, "max_tokens": 3, "logprobs": 2, "echo": True, "ignore_eos": True})
    ids = prompt + a.token_ids
    with torch.inference_mode():
        logits = ar.loaded.model(torch.tensor([ids])).logits[0].float()
    expected = [None] + [float(torch.log_softmax(logits[i - 1], -1)[ids[i]]) for i in range(1, len(ids))]
    got = a.logprobs["token_logprobs"]
    assert got[0] is None and got[1:] == pytest.approx(expected[1:], abs=1e-5)
    assert all(len(t) == 2 for t in a.logprobs["top_logprobs"][1:])
    # greedy answer tokens are their step's most likely token
    for i in range(len(prompt), len(ids)):
        assert max(a.logprobs["top_logprobs"][i].values()) == pytest.approx(got[i], abs=1e-5)


# --------------------------------------------------------------------------- over loopback


def _start(config, model: str, *flags: str):
    proc = subprocess.Popen([sys.executable, "-m", "dlm_bench", "serve", "--config", str(config), "--model", model,
                             "--port", "0", *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline()
    match = re.search(r"at (http://127\.0\.0\.1:\d+)/v1/completions", line)
    assert match, line
    return proc, match.group(1)


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.integration
def test_lm_eval_evaluates_the_served_diffusion_path(tiny_models, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    _, config = _exp(tiny_models, tmp_path)
    docs = [{"question": f"Item {i}:", "answer": "x"} for i in range(3)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.yaml").write_text(yaml.safe_dump({
        "task": "dlm_bench_toy", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "docs.jsonl")}}, "test_split": "test",
        "output_type": "generate_until", "doc_to_text": "{{question}}", "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 16},
        "metric_list": [{"metric": "exact_match"}]}))
    proc, url = _start(config, "tiny-llada", "--steps", "4")
    try:
        status, error = _post(url, {"prompt": "a", "max_tokens": 12})
        assert status == 400 and error["error"]["param"] == "max_tokens"
        out = lm_eval.simple_evaluate(
            model="local-completions",
            model_args=f"base_url={url}/v1/completions,model=tiny-llada,tokenizer_backend=None,"
                       f"tokenized_requests=False,num_concurrent=1,max_retries=1",
            tasks=["dlm_bench_toy"], task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
            log_samples=True)
        samples = out["samples"]["dlm_bench_toy"]
        assert len(samples) == 3 and "exact_match,none" in out["results"]["dlm_bench_toy"]
        for sample in samples:  # what lm-eval recorded is what the server answers the same request
            status, direct = _post(url, {"prompt": sample["arguments"][0][0], "max_tokens": 16, "stop": ["\n"],
                                         "temperature": 0, "seed": 1234})
            assert status == 200 and sample["resps"][0][0] == direct["choices"][0]["text"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.integration
def test_the_harness_measures_the_served_ar_path_with_its_openai_engine(tiny_models, tmp_path):
    _, config = _exp(tiny_models, tmp_path)
    proc, url = _start(config, "tiny-llama")
    try:
        data = mini_config_dict(tiny_models, tmp_path / "client")
        data["grid"] = {"batch_size": [1, 2], "seq_len": [32], "steps": [4]}
        data["engines"] = {"engine": ["openai"], "openai": {"url": url + "/v1", "models": ["tiny-llama"],
                                                            "served_model": "tiny-llama"}}
        data["pairs"] = {"measure": []}
        client = tmp_path / "client.yaml"
        client.write_text(yaml.safe_dump(data))
        run = subprocess.run([sys.executable, "-m", "dlm_bench", "run", "--config", str(client), "--no_figure",
                              "--log_level", "WARNING"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        import pandas as pd

        rows = pd.read_csv(tmp_path / "client" / "raw" / "raw_metrics.csv")
        served = rows[rows["engine"] == "openai"]
        assert len(served) == 2 and (served["status"] == "ok").all()
        assert (served["answers_not_n_out"] == 0).all()  # every answer had N_out tokens
    finally:
        proc.terminate()
        proc.wait(timeout=30)

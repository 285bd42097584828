"""The engines against the real llama.cpp binaries (built by test.sh / .ci/run) on the trained pair.

Skipped with a reason only where llama.cpp is not built; under CI (CI set) a missing build fails.
"""

import csv
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

from conftest import PROMPTS, ROOT
from dlm_bench.config import (ARDecoding, Cell, DiffusionDecoding, MeasurementSettings, ModelSpec, TimingSpec,
                              load_experiment)
from dlm_bench.engines import EngineError
from dlm_bench.engines.llamacpp.build import find_built
from dlm_bench.engines.llamacpp.diffusion_cli import CliError, DiffusionRequest, run_diffusion
from dlm_bench.engines.llamacpp.engine import DiffusionCliEngine, ServerEngine
from dlm_bench.engines.llamacpp.gguf_export import export_gguf
from dlm_bench.engines.llamacpp.server import LlamaServer, ServerError
from dlm_bench.engines.measure import canonical_ids, encode_text, token_agreement
from dlm_bench.engines.openai_engine import OpenAIEngine
from dlm_bench.cli import main
from dlm_bench.models.loader import LoadSettings, load_model

pytestmark = pytest.mark.evidence  # every test here runs the real llama.cpp build

AR, MDM = ROOT / "checkpoints" / "austen" / "ar", ROOT / "checkpoints" / "austen" / "mdm"


@pytest.fixture(scope="module")
def llama():
    built = find_built()
    if built is None:
        if os.environ.get("CI"):
            pytest.fail("llama.cpp is not built; .ci/run builds it with scripts/build_llamacpp.py")
        pytest.skip("llama.cpp is not built here (python scripts/build_llamacpp.py)")
    return built


@pytest.fixture(scope="module")
def ggufs(llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    return {name: export_gguf(llama, path, "f32", out) for name, path in (("ar", AR), ("mdm", MDM))}


@pytest.fixture(scope="module")
def pair():
    settings = LoadSettings("fp32", "sdpa", 0, str(ROOT))
    from dlm_bench.config import ModelSpec
    return {name: load_model(ModelSpec(name, family, path=str(path)), torch.device("cpu"), settings)
            for name, family, path in (("ar", "llama", AR), ("mdm", "llada", MDM))}


def prompts(tokenizer, count: int, length: int = 32) -> list[list[int]]:
    lines = [ln for ln in PROMPTS.read_text().splitlines() if ln.strip()]
    return [tokenizer(ln, add_special_tokens=False).input_ids[:length] for ln in lines[:count]]


def _cell(kind: str = "diffusion") -> Cell:
    """A grid cell of N = 64 as the engines read it: K = 32 in one block of 32 for diffusion, greedy for AR."""
    settings = MeasurementSettings(1234, TimingSpec(), "file", None, 2, (), None, False)
    if kind == "diffusion":
        return Cell(ModelSpec("mdm", "llada", path="x"), settings, 1, 64, "fp32", "sdpa",
                    DiffusionDecoding(steps=32, sampler="low_confidence", cache="none", block_length=32,
                                      schedule="llada"), engine="llamacpp", weights_format="f32")
    return Cell(ModelSpec("ar", "llama", path="x"), settings, 1, 64, "fp32", "sdpa", ARDecoding(None),
                engine="llamacpp", weights_format="f32")


def test_the_diffusion_cli_computes_what_the_torch_model_computes(llama, ggufs, pair):
    """At temperature 0 the CLI commits the argmax left to right (every confidence is 1 after top-k 1); the
    same order replayed here with the torch model, one position per step, gives the same tokens."""
    mdm = pair["mdm"]
    engine = DiffusionCliEngine(llama, ggufs["mdm"], _cell(), mdm.tokenizer, threads=2, timeout_s=60)
    for prompt in prompts(mdm.tokenizer, 2):
        x = torch.tensor([prompt + [mdm.mask_token_id] * 32])
        with torch.no_grad():
            for pos in range(32, 64):
                x[0, pos] = mdm.model(x).logits[0, pos].argmax()
        replay = canonical_ids(mdm.tokenizer, x[0, 32:].tolist())
        batch = engine.run([prompt])
        answer = batch.answers[0]
        assert token_agreement(replay, encode_text(mdm.tokenizer, answer.text), 32) >= 0.95
        assert answer.steps == 32 and answer.forward_passes == 33 and answer.tokens_returned == 32
        assert batch.latency_ms > 0 and len(batch.step_ms) == 33  # 32 steps + the empty block's forward


def test_the_server_decodes_greedily_as_transformers_does(llama, ggufs, pair):
    ar = pair["ar"]
    log = ggufs["ar"].parent / "server.log"
    with LlamaServer(llama, ggufs["ar"], threads=2, parallel=2, context=256, log_path=log) as server:
        engine = ServerEngine(llama, server, _cell("autoregressive"), threads=2, timeout_s=60)
        batch = engine.run(prompts(ar.tokenizer, 2))
    for prompt, answer in zip(prompts(ar.tokenizer, 2), batch.answers):
        with torch.no_grad():
            ref = ar.model.generate(torch.tensor([prompt]), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                                    pad_token_id=ar.eos_token_id)[0, 32:].tolist()
        assert answer.token_ids == ref and answer.tokens_returned == 32
        assert 0 < answer.ttft_ms < answer.latency_ms and answer.itl_ms > 0 and answer.engine_ms > 0
    assert not server.alive()


def test_the_openai_engine_streams_b_answers_from_a_real_server(llama, ggufs, pair, monkeypatch):
    ar = pair["ar"]
    monkeypatch.setenv("DLM_BENCH_TEST_KEY", "secret")
    with LlamaServer(llama, ggufs["ar"], threads=2, parallel=4, context=512,
                     log_path=ggufs["ar"].parent / "server-openai.log") as server:
        engine = OpenAIEngine(server.url + "/v1", "austen-ar", _cell("autoregressive"), ar.tokenizer, 60,
                              api_key_env="DLM_BENCH_TEST_KEY", local_server=server)
        batch = engine.run(prompts(ar.tokenizer, 4))
    assert len(batch.answers) == 4 and all(a.tokens_returned == 32 and a.text for a in batch.answers)
    assert all(a.ttft_ms < a.latency_ms <= batch.latency_ms for a in batch.answers)


def test_a_server_that_dies_is_an_engine_error_and_a_bad_gguf_does_not_load(llama, ggufs, pair, tmp_path):
    with LlamaServer(llama, ggufs["ar"], threads=2, parallel=1, context=128, log_path=tmp_path / "s.log") as server:
        engine = ServerEngine(llama, server, _cell("autoregressive"), threads=2, timeout_s=30)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        with pytest.raises(EngineError, match="llama-server is not running"):
            engine.run(prompts(pair["ar"].tokenizer, 1))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ServerError, match="llama-server exited with .* while starting"):
        LlamaServer(llama, bad, threads=1, parallel=1, context=64, log_path=tmp_path / "bad.log").start()
    req = DiffusionRequest("It was", 32, 32, 8, 32, "llada", "low_confidence", 0.0, 1, 1)
    with pytest.raises(CliError, match="llama-diffusion-cli exited with"):
        run_diffusion(llama, bad, req, 30)


def test_quantized_exports_are_smaller_and_run(llama, pair, tmp_path):
    q8 = export_gguf(llama, MDM, "q8_0", tmp_path)
    f32 = tmp_path / q8.name.replace("q8_0", "f32")
    assert f32.is_file() and q8.stat().st_size < 0.5 * f32.stat().st_size
    tok = pair["mdm"].tokenizer
    text = tok.decode(prompts(tok, 1)[0])
    run = run_diffusion(llama, q8, DiffusionRequest(text, 32, 32, 8, 32, "llada", "low_confidence", 0.0, 1, 2), 60)
    assert run.steps_run == 9 and run.total_ms > 0  # 8 steps over the answer block, 1 forward of the empty one
    assert export_gguf(llama, MDM, "q8_0", tmp_path) == q8  # the export is cached


def test_one_grid_puts_torch_llamacpp_and_openai_side_by_side(llama, tmp_path):
    config = {
        "name": "engines_test", "output_dir": str(tmp_path / "raw"), "figures_dir": str(tmp_path / "fig"),
        "device": "cpu", "precision": "fp32", "attention": "sdpa", "seed": 3, "cpu_threads": 2,
        "models": [{"name": "austen-ar", "family": "llama", "path": str(AR)},
                   {"name": "austen-mdm", "family": "llada", "path": str(MDM)}],
        "grid": {"batch_size": [1], "seq_len": [64], "steps": [8]},
        "diffusion": {"block_length": 32}, "autoregressive": {"decode": ["eager"]},
        "engines": {"engine": ["torch", "llamacpp", "openai"], "per_prompt": 2, "per_prompt_pairs": 1,
                    "llamacpp": {"weights_format": ["f32"], "cache_dir": str(llama.root.parent)},
                    "openai": {"url": "local", "models": ["austen-ar"]}},
        "timing": {"warmup": 0, "repeats": 2},
        "prompts": {"source": "file", "file": str(PROMPTS), "max_prompts": 2},
    }
    path = tmp_path / "engines.yaml"
    path.write_text(yaml.safe_dump(config))
    assert len(load_experiment(path).models) == 2
    assert main(["--config", str(path), "--no_score", "--no_pairs", "--no_figure"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "raw" / "raw_metrics.csv")))
    assert {(r["model_name"], r["engine"]) for r in rows if r["status"] == "ok"} == {
        ("austen-ar", "torch"), ("austen-ar", "llamacpp"), ("austen-ar", "openai"),
        ("austen-mdm", "torch"), ("austen-mdm", "llamacpp")}
    ar_llama = next(r for r in rows if r["engine"] == "llamacpp" and r["kind"] == "autoregressive")
    assert float(ar_llama["agreement_with_torch"]) == 1.0 and ar_llama["answers_not_n_out"] == "0"
    assert ar_llama["engine_version"].startswith("llama.cpp from llama-cpp-python")
    per_prompt = list(csv.DictReader(open(tmp_path / "raw" / "per_prompt.csv")))
    assert len(per_prompt) == 3 * 2  # three engine cells x two prompts
    assert main(["merge", "--config", str(path)]) == 0
    summary = (tmp_path / "raw" / "summary.md").read_text()
    assert "## Engines" in summary and "### Per prompt" in summary and "openai:f32" in summary
    # the published pairs are torch paths': no engine cell becomes an arm
    assert main(["pairs", "--config", str(path), "--no_figure"]) == 0
    engine_ids = {r["cell_id"] for r in rows if r["engine"] != "torch"}
    pair_rows = list(csv.DictReader(open(tmp_path / "raw" / "pairs.csv")))
    assert not engine_ids & {r[k] for r in pair_rows for k in ("reference_cell_id", "contender_cell_id")}
    leftover = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).startswith("llama-server")
                and str(llama.root) in _cmdline(p)]
    assert leftover == []
    # a server that died is started again for the next cell that needs it, and the pool stops it at the end
    from dlm_bench.engines.pool import EnginePool
    with EnginePool(load_experiment(path), torch.device("cpu"), tmp_path / "logs", progress=False) as pool:
        gguf = next(llama.root.glob("gguf/ar-*-f32.gguf"))
        first = pool.server(gguf)
        first.proc.kill()
        first.proc.wait()
        second = pool.server(gguf)
        assert second is not first and second.alive() and second.proc.pid != first.proc.pid
    assert not second.alive()


def _cmdline(proc: Path) -> str:
    try:
        return Path(os.path.basename((proc / "cmdline").read_bytes().split(b"\0")[0].decode())).name + " " + \
            (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


HOLDER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises, even where a shell started us ignoring it
from pathlib import Path
from dlm_bench.engines.llamacpp.build import find_built
from dlm_bench.engines.llamacpp.server import LlamaServer
with LlamaServer(find_built(), Path({gguf!r}), 1, 1, 128, Path({log!r})) as server:
    print(server.proc.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_no_server_outlives_ctrl_c_or_a_killed_harness(llama, ggufs, tmp_path, how):
    """Ctrl-C ends the context (the server is stopped); a killed harness takes its server with it."""
    import subprocess
    import sys
    import time

    code = HOLDER.format(gguf=str(ggufs["ar"]), log=str(tmp_path / "holder.log"))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(holder.stdout.readline())
    assert Path(f"/proc/{server_pid}").exists()
    holder.send_signal(how)
    holder.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _running(server_pid):
        time.sleep(0.1)
    assert not _running(server_pid)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent (pid 1 after the holder died) reaps it


def test_every_project_layout_exports_and_quantizes(llama, tiny_models, tmp_path):
    """The tiny LLaMA, LLaDA and Dream checkpoints (their own BPE tokenizers) at bf16 and q4_k_m; the
    Dream GGUF runs in the CLI under the timestep schedule."""
    from dlm_bench.models.loader import load_tokenizer
    from dlm_bench.config import ModelSpec

    for name in ("llama", "llada", "dream"):
        bf16 = export_gguf(llama, tiny_models[name], "bf16", tmp_path)
        q4 = export_gguf(llama, tiny_models[name], "q4_k_m", tmp_path)
        assert bf16.read_bytes()[:4] == q4.read_bytes()[:4] == b"GGUF" and q4.stat().st_size < bf16.stat().st_size
    tok = load_tokenizer(ModelSpec("d", "dream", path=str(tiny_models["dream"])), ROOT)
    prompt = tok.decode(tok(PROMPTS.read_text().splitlines()[0], add_special_tokens=False).input_ids[:16])
    run = run_diffusion(llama, export_gguf(llama, tiny_models["dream"], "q4_k_m", tmp_path),
                        DiffusionRequest(prompt, 16, 16, 8, 16, "dream", "random", 0.0, 1, 2, eps=1e-3), 60)
    assert run.steps_run == 8 and run.total_ms > 0

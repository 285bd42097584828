"""The engine axis without llama.cpp binaries: CLI argument mapping and log parsing, the streaming
client against a small local SSE server, GGUF tokenizer facts, cell expansion, faults, the tables."""

import copy
import csv
import http.server
import json
import math
import threading
import time

import pandas as pd
import torch
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from conftest import mini_config_dict, write_config
from dlm_bench.sweep import runner
from dlm_bench.analysis.data import Results
from dlm_bench.analysis.engines import engines_table, pair_verdict, per_prompt_table
from dlm_bench.config import LOCAL_SERVER, apply_overrides, expand_cells, load_experiment
from dlm_bench.engines.llamacpp import diffusion_cli
from dlm_bench.engines.llamacpp.build import LlamaCpp
from dlm_bench.engines.llamacpp.diffusion_cli import (CliError, DiffusionRequest, IncompleteLog, cli_arguments,
                                                forward_passes, parse_log, steps_argument, unsupported)
from dlm_bench.engines.llamacpp.gguf_export import pre_tokenizer_of, prepends_bos
from dlm_bench.engines.measure import token_agreement
from dlm_bench.engines.streaming import read_native_chunk, read_openai_chunk, stream_all

LOG = ("0.00.010.000 I diffusion_params: - steps                     u32              = 4\n"
       "0.00.020.000 I \rdiffusion step: 0/4 [          ] 0%"
       "0.00.025.500 I \rdiffusion step: 1/4 [==        ] 25%"
       "0.00.031.000 I \rdiffusion step: 2/4 [=====     ] 50%"
       "0.00.032.000 I \ntotal time: 12.00ms, time per step: 3.00ms, sampling time per step: 0.10ms\n"
       "0.00.032.100 I \n she said, and\nwent on\n")


def request(**change) -> DiffusionRequest:
    base = dict(prompt_text="It was", prompt_len=32, n_out=32, steps=8, block_length=32, schedule="llada",
                sampler="low_confidence", temperature=0.0, seed=1, threads=2)
    return DiffusionRequest(**{**base, **change})


# --------------------------------------------------------------------------- llama-diffusion-cli


def test_the_cli_log_gives_the_answer_total_and_step_times():
    run = parse_log(LOG)
    assert run.text == " she said, and\nwent on"
    assert run.total_ms == 12.0 and run.steps_run == 3
    assert run.step_ms == pytest.approx([5.5, 5.5, 1.0])  # 20.0 -> 25.5 -> 31.0 -> 32.0 ms


def test_a_log_without_its_last_lines_is_incomplete():
    with pytest.raises(IncompleteLog, match="printed no total time; its last line: .*diffusion step: 2/4"):
        parse_log(LOG[:LOG.index("total time") - 16])


def test_an_incomplete_log_is_run_again_with_a_warning(monkeypatch, caplog):
    outcomes = [IncompleteLog("lost"), IncompleteLog("lost"), parse_log(LOG)]

    def once(cmd, timeout_s):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    pauses = []
    monkeypatch.setattr(diffusion_cli, "_run_once", once)
    monkeypatch.setattr(diffusion_cli.time, "sleep", pauses.append)
    llama = LlamaCpp(root=diffusion_cli.Path("/nowhere"), version="v", build_flags="")
    assert diffusion_cli.run_diffusion(llama, diffusion_cli.Path("m.gguf"), request(), 5).total_ms == 12.0
    assert sum("lost the end of its log" in r.message for r in caplog.records) == 2
    assert pauses == [1.0, 2.0]  # a growing pause before each new run
    outcomes[:] = [IncompleteLog("lost")] * 5
    pauses.clear()
    with pytest.raises(CliError, match=r"\(5 runs\)"):
        diffusion_cli.run_diffusion(llama, diffusion_cli.Path("m.gguf"), request(), 5)
    assert pauses == [1.0, 2.0, 3.0, 4.0] and not outcomes


@pytest.mark.parametrize("prompt,n_out,steps,expected_steps,expected_forwards", [
    (32, 32, 8, 16, 9),     # 2 blocks scheduled (64 / 32), 1 holds the answer: 8 steps each, 1 empty forward
    (64, 64, 8, 16, 10),    # 4 blocks, 2 answer blocks: 4 steps per block, 2 empty forwards
    (32, 64, 16, 24, 17),   # 3 blocks, 2 answer blocks: 8 per block, 1 empty forward
])
def test_steps_map_to_the_cli_block_schedule(prompt, n_out, steps, expected_steps, expected_forwards):
    req = request(prompt_len=prompt, n_out=n_out, steps=steps)
    assert steps_argument(req) == expected_steps and forward_passes(req) == expected_forwards
    assert unsupported(req) is None


def test_what_the_cli_cannot_run_is_named():
    assert "no llama-diffusion-cli algorithm" in unsupported(request(sampler="threshold"))
    assert "multiples of block_length 32" in unsupported(request(prompt_len=48))
    assert "not a multiple of the answer's 2 blocks" in unsupported(request(n_out=64, prompt_len=64, steps=5))


def test_cli_arguments_greedy_at_temperature_zero_and_dream_random_is_origin():
    llama = LlamaCpp(root=diffusion_cli.Path("/opt/l"), version="v", build_flags="")
    args = cli_arguments(llama, diffusion_cli.Path("m.gguf"), request())
    pairs = dict(zip(args[1::2], args[2::2])) | dict(zip(args[2::2], args[3::2]))
    assert pairs["--top-k"] == "1" and pairs["--diffusion-algorithm"] == "4" and pairs["--diffusion-steps"] == "16"
    assert pairs["-ub"] == pairs["-c"] == "64" and pairs["--diffusion-block-length"] == "32"
    warm = cli_arguments(llama, diffusion_cli.Path("m.gguf"), request(temperature=0.7, sampler="random"))
    assert "--top-k" not in warm and warm[warm.index("--diffusion-algorithm") + 1] == "3"
    dream = cli_arguments(llama, diffusion_cli.Path("m.gguf"), request(schedule="dream", eps=1e-3, sampler="random"))
    assert dream[dream.index("--diffusion-algorithm") + 1] == "0"
    assert dream[dream.index("--diffusion-block-length") + 1] == "0" and dream[dream.index("--diffusion-eps") + 1] == "0.001"


# --------------------------------------------------------------------------- GGUF tokenizer facts


def _bpe(tmp_path, pre, post=None):
    tok = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "<s>": 2}, merges=[]))
    tok.pre_tokenizer = pre
    tok.add_special_tokens(["<s>"])
    if post is not None:
        tok.post_processor = post
    path = tmp_path / f"tok{len(list(tmp_path.glob('tok*.json')))}.json"
    tok.save(str(path))
    return path


def test_byte_level_splits_are_gpt2_and_other_splits_are_left_to_the_converter(tmp_path):
    assert pre_tokenizer_of(_bpe(tmp_path, pre_tokenizers.ByteLevel(add_prefix_space=False))) == "gpt-2"
    assert pre_tokenizer_of(_bpe(tmp_path, pre_tokenizers.Sequence([pre_tokenizers.ByteLevel()]))) == "gpt-2"
    assert pre_tokenizer_of(_bpe(tmp_path, pre_tokenizers.ByteLevel(use_regex=False))) is None
    assert pre_tokenizer_of(_bpe(tmp_path, pre_tokenizers.Whitespace())) is None


def test_bos_is_written_as_the_tokenizer_behaves(tmp_path):
    plain = _bpe(tmp_path, pre_tokenizers.Whitespace())
    with_bos = _bpe(tmp_path, pre_tokenizers.Whitespace(),
                    processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)]))
    assert prepends_bos(plain) is False and prepends_bos(with_bos) is True


# --------------------------------------------------------------------------- streaming client


class _SSE(http.server.BaseHTTPRequestHandler):
    """Streams what the test put in `script`: a list of (delay s, event dict or raw line)."""

    script: list = []
    seen: list = []

    def do_POST(self):
        _SSE.seen.append((dict(self.headers), json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        if _SSE.script and _SSE.script[0] == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model not loaded")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for delay, event in _SSE.script:
            time.sleep(delay)
            line = event if isinstance(event, str) else json.dumps(event)
            self.wfile.write(f"data: {line}\n\n".encode())
            self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def sse_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SSE)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _openai(text, finish=None, usage=None):
    event = {"choices": [{"text": text, "finish_reason": finish}]}
    return {**event, "usage": usage} if usage else event


def test_openai_stream_times_each_chunk_and_reads_usage(sse_server):
    _SSE.script = [(0.05, _openai("It")), (0.05, _openai(" was")), (0.05, _openai(" a")),
                   (0.0, _openai("", "length", {"completion_tokens": 3})), (0.0, "[DONE]")]
    _SSE.seen = []
    answers, wall = stream_all(sse_server + "/v1/completions", [{"a": 1}, {"a": 2}], {"Authorization": "Bearer k"},
                               5, read_openai_chunk)
    for a in answers:
        assert a.error is None and a.text == "It was a" and a.tokens_returned == 3 and a.finished
        gaps = [b - t for t, b in zip(a.chunk_times, a.chunk_times[1:])]
        assert len(a.chunk_times) == 3 and a.chunk_times[0] >= 0.045 and all(g >= 0.045 for g in gaps)
        assert a.done_s >= a.chunk_times[-1] and wall >= a.done_s
    assert sorted(body["a"] for _, body in _SSE.seen) == [1, 2]  # both requests sent, concurrently
    assert wall < 0.15 * 2  # two 0.15 s streams at once, not one after the other
    assert all(h.get("Authorization") == "Bearer k" for h, _ in _SSE.seen)


def test_native_stream_reads_token_ids_and_server_timings(sse_server):
    _SSE.script = [(0.0, {"content": " of", "tokens": [284], "stop": False}),
                   (0.0, {"content": " the", "tokens": [269], "stop": False}),
                   (0.0, {"content": "", "tokens": [], "stop": True, "tokens_predicted": 2,
                          "timings": {"prompt_ms": 1.5, "predicted_ms": 2.5}})]
    (a,), _ = stream_all(sse_server + "/completion", [{}], {}, 5, read_native_chunk)
    assert a.error is None and a.token_ids == [284, 269] and a.text == " of the" and a.tokens_returned == 2
    assert a.server_timings == {"prompt_ms": 1.5, "predicted_ms": 2.5}


@pytest.mark.parametrize("script,timeout,message", [
    (["500"], 5, "HTTP 500 from .*: model not loaded"),
    ([(0.0, _openai("It"))], 5, "the stream ended before the answer was complete"),
    ([(1.0, _openai("It"))], 0.3, "no data within 0.3 s|no answer within 0.3 s"),
])
def test_stream_faults_are_one_line_errors(sse_server, script, timeout, message):
    _SSE.script = script
    (a,), _ = stream_all(sse_server + "/v1/completions", [{}], {}, timeout, read_openai_chunk)
    assert a.error is not None and "\n" not in a.error
    assert __import__("re").search(message, a.error)


def test_an_unreachable_url_is_an_error():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (a,), _ = stream_all(f"http://127.0.0.1:{port}/v1/completions", [{}], {}, 5, read_openai_chunk)
    assert "unreachable or failed" in a.error


# --------------------------------------------------------------------------- agreement


def test_token_agreement_counts_equal_positions_over_n_out():
    assert token_agreement([1, 2, 3, 4], [1, 9, 3, 4], 4) == 0.75
    assert token_agreement([1, 2], [1, 2, 3, 4], 4) == 0.5  # missing positions disagree
    assert token_agreement([5, 6, 7], [5, 6, 7], 2) == 1.0


# --------------------------------------------------------------------------- the grid


def _engine_config(tiny_models, tmp_path, **engines):
    data = mini_config_dict(tiny_models, tmp_path)
    data["diffusion"] = {"block_length": 8, "sampler": ["low_confidence", "threshold"], "cache": ["none", "dual"]}
    data["engines"] = {"engine": ["torch", "llamacpp", "openai"],
                       "llamacpp": {"weights_format": ["f32", "q8_0"]},
                       "openai": {"url": "http://127.0.0.1:9/v1", "models": ["tiny-llama"]}, **engines}
    return data


def test_engine_cells_exist_where_the_engine_can_run_them(tiny_models, tmp_path):
    data = _engine_config(tiny_models, tmp_path)
    cells = expand_cells(load_experiment(write_config(tmp_path, data)))
    by = lambda **kw: [c for c in cells if all(c.identity()[k] == v for k, v in kw.items())]  # noqa: E731
    assert len(by(engine="torch", kind="autoregressive")) == 2  # B 1, 2 x decode eager
    assert len(by(engine="llamacpp", kind="autoregressive")) == 4  # B x 2 weights formats
    assert len(by(engine="openai")) == 2 and all(c.weights_format is None for c in by(engine="openai"))
    assert len(by(engine="torch", kind="diffusion")) == 2 * 2 * 2 * 2  # B x K x samplers x caches
    llama_diffusion = by(engine="llamacpp", kind="diffusion")
    assert len(llama_diffusion) == 2 * 2  # B = 1 only, K 4 and 8, low_confidence only, 2 formats
    assert {(c.batch_size, c.decoding.sampler, c.decoding.cache) for c in llama_diffusion} == \
        {(1, "low_confidence", "none")}
    assert len(cells) == 28
    # the torch cells keep the ids they had before the engine axis existed
    plain = copy.deepcopy(data)
    del plain["engines"]
    before = {c.cell_id("hw") for c in expand_cells(load_experiment(write_config(tmp_path, plain)))}
    assert {c.cell_id("hw") for c in by(engine="torch")} == before


def test_local_openai_cells_carry_their_weights_and_models_override_drops_the_endpoint(tiny_models, tmp_path):
    data = _engine_config(tiny_models, tmp_path, engine=["torch", "openai"],
                          openai={"url": LOCAL_SERVER, "models": ["tiny-llama"], "weights_format": "bf16"})
    cells = expand_cells(load_experiment(write_config(tmp_path, data)))
    assert {c.weights_format for c in cells if c.engine == "openai"} == {"bf16"}
    raw = apply_overrides(data, {"models": ["tiny-llada"]})
    assert raw["engines"]["engine"] == ["torch"] and raw["engines"]["openai"]["models"] == []


def test_llamacpp_over_diffusion_needs_a_sampler_the_cli_has(tiny_models, tmp_path):
    data = _engine_config(tiny_models, tmp_path)
    data["diffusion"]["sampler"] = ["threshold"]
    with pytest.raises(Exception, match="diffusion.sampler: threshold has none that llama-diffusion-cli runs"):
        load_experiment(write_config(tmp_path, data))


@pytest.mark.integration
def test_engine_faults_become_error_rows_and_the_sweep_goes_on(tiny_models, tmp_path, monkeypatch):
    """No binaries where the build says they are: every engine cell is an error with one line, torch runs."""
    from dlm_bench.engines import pool

    fake = LlamaCpp(root=tmp_path / "nobuild", version="llama.cpp (test)", build_flags="")
    monkeypatch.setattr(pool, "ensure_built", lambda *a, **k: fake)
    monkeypatch.setattr(pool, "export_gguf", lambda llama, checkpoint, fmt: tmp_path / f"{checkpoint.name}.gguf")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once the socket is closed
    data = _engine_config(tiny_models, tmp_path, engine=["torch", "llamacpp", "openai"],
                          openai={"url": f"http://127.0.0.1:{closed}/v1", "models": ["tiny-llama"]})
    data["engines"]["llamacpp"]["weights_format"] = ["f32"]
    data["grid"]["batch_size"] = [1]
    data["diffusion"] = {"block_length": 8}
    summary = runner.run_experiment(load_experiment(write_config(tmp_path, data)), progress=False)
    rows = list(csv.DictReader(open(summary.csv_path)))
    engine_rows = [r for r in rows if r["engine"] != "torch"]
    assert len(engine_rows) == 4 and summary.errors == 4
    assert any(r["engine"] == "openai" and "unreachable or failed" in r["error"] for r in engine_rows)
    assert all(r["status"] == "error" and "\n" not in r["error"] for r in engine_rows)
    assert any("llama-server not found at" in r["error"] for r in engine_rows)
    assert any("llama-diffusion-cli could not start" in r["error"] for r in engine_rows)
    assert all(r["status"] == "ok" for r in rows if r["engine"] == "torch")


# --------------------------------------------------------------------------- the tables


def test_a_direction_only_where_the_sign_test_over_prompts_finds_one():
    assert pair_verdict(8, 0) == "engine faster (8 of 8 prompts, p = 0.0078)"  # 2 / 2^8
    assert pair_verdict(0, 6) == "torch faster (6 of 6 prompts, p = 0.031)"  # 2 / 2^6
    assert pair_verdict(1, 5) == "no direction (torch faster on 5 of 6 prompts, p = 0.22)"  # 2 * 7 / 64
    assert pair_verdict(4, 0) == "no direction (engine faster on 4 of 4 prompts, p = 0.12)"
    assert pair_verdict(0, 0) == "—"


def _engine_results():
    row = {"cell_id": "c1", "status": "ok", "model_name": "ar", "kind": "autoregressive", "engine": "llamacpp",
           "weights_format": "q8_0", "seq_len": 64, "batch_size": 1, "steps": math.nan, "latency_ms_median": 20.0,
           "tokens_per_s_median": 1600.0, "ttft_ms_median": 3.0, "itl_ms_median": 0.5, "step_ms_p50": math.nan,
           "step_ms_p99": math.nan, "answers_not_n_out": 0, "agreement_with_torch": 0.75, "error": None}
    per_prompt = pd.DataFrame([
        {"cell_id": "c1", "model_name": "ar", "kind": "autoregressive", "engine": "llamacpp", "weights_format": "q8_0",
         "seq_len": 64, "steps": 32, "passage_id": p, "engine_tokens_per_s": 1600.0, "torch_tokens_per_s": 400.0,
         "speedup_vs_torch": s, "speedup_min": lo, "speedup_max": hi, "forward_passes": math.nan,
         "answer_tokens": 32, "agreement_with_torch": a}
        for p, s, lo, hi, a in (("line1", 4.0, 3.0, 5.0, 1.0), ("line2", 2.0, 1.5, 2.5, 0.5))])
    return Results(rows=pd.DataFrame(), parity=pd.DataFrame(), engine_rows=pd.DataFrame([row]), per_prompt=per_prompt)


def test_engines_table_gives_the_median_prompt_speedup_and_the_pairs_range():
    text = engines_table(_engine_results())
    assert "| ar | 64 | 1 | — | llamacpp:q8_0 | 20.00 | 1,600.0 | 3.00 / 0.500 | 0 | 0.75 |" in text
    assert "3.00 (2 prompts; pairs 1.50–5.00) | no direction (engine faster on 2 of 2 prompts, p = 0.5)" in text


def test_engines_digest_folds_the_cells_per_engine_and_n():
    from dlm_bench.analysis.engines import engines_digest

    results = _engine_results()
    base = results.engine_rows.iloc[0].to_dict()
    diffusion = [dict(base, cell_id=cid, model_name="mdm", kind="diffusion", weights_format="f32", steps=k,
                      sampler=sampler, agreement_with_torch=agree)
                 for cid, k, sampler, agree in (("c2", 8, "random", 0.2), ("c4", 32, "margin", 0.4))]
    results.engine_rows = pd.concat([results.engine_rows, pd.DataFrame(diffusion)], ignore_index=True)
    prompts = [{"cell_id": cid, "passage_id": f"line{i}", "speedup_vs_torch": s, "speedup_min": lo, "speedup_max": hi}
               for cid, count, s, lo, hi in (("c2", 6, 0.5, 0.4, 0.8), ("c4", 1, 1.2, 0.9, 1.4)) for i in range(count)]
    results.per_prompt = pd.concat([results.per_prompt, pd.DataFrame(prompts)], ignore_index=True)
    text = engines_digest(results)
    # AR: one cell, its median prompt 3.0; both prompts faster, too few for a direction (p = 0.5)
    assert "| ar | llamacpp:q8_0 | 64 | — | 1 | 3.00 | 0 / 0 / 1 | 0.75 |" in text
    # diffusion: two cells, median of 0.5 and 1.2; six prompts slower (p = 0.031), one prompt faster (no direction)
    assert ("| mdm | llamacpp:f32 | 64 | K 8, 32; 2 samplers | 2 | 0.85 (0.50–1.20) | 0 / 1 / 1 | 0.30 (0.20–0.40) |"
            in text)
    results.per_prompt = pd.DataFrame()
    assert engines_digest(results) == "_No engine cell ran its per-prompt pairs._"


def test_per_prompt_table_has_one_row_per_prompt():
    text = per_prompt_table(_engine_results())
    assert "| ar | 64 | — | llamacpp:q8_0 | line1 | 1,600.0 | 400.0 | 4.00 (3.00–5.00) | 32 | — | 32 | 1.00 |" in text
    assert "| line2 |" in text and text.count("\n| ar |") == 2


@pytest.mark.integration
def test_a_cli_that_hangs_times_out(tmp_path):
    bin_dir = tmp_path / "build" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "llama-diffusion-cli"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    llama = LlamaCpp(root=tmp_path, version="v", build_flags="")
    start = time.perf_counter()
    with pytest.raises(CliError, match="llama-diffusion-cli timed out after 0.5 s"):
        diffusion_cli.run_diffusion(llama, tmp_path / "m.gguf", request(), 0.5)
    assert time.perf_counter() - start < 10


def test_without_a_build_or_the_tools_to_make_one_the_run_stops_before_any_model_loads(tiny_models, tmp_path,
                                                                                      monkeypatch, capsys):
    from dlm_bench.engines.llamacpp import build
    from dlm_bench.cli import main

    monkeypatch.setattr(build, "find_built", lambda cache_dir=None: None)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    data = _engine_config(tiny_models, tmp_path, engine=["torch", "llamacpp"])
    assert main(["--config", str(write_config(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "engines.engine: llama.cpp is not built in" in err and "cmake and a C++ compiler are missing" in err
    assert not (tmp_path / "raw").exists()


def test_engines_figure_has_a_speedup_and_an_agreement_panel_per_model(tmp_path, monkeypatch):
    from matplotlib import image

    from dlm_bench.analysis import figures

    results = _engine_results()
    diffusion = {"cell_id": "c2", "model_name": "mdm", "kind": "diffusion", "engine": "llamacpp",
                 "weights_format": "f32", "seq_len": 64, "steps": 16, "sampler": "random", "passage_id": "line1",
                 "speedup_vs_torch": 0.5, "speedup_min": 0.4, "speedup_max": 0.8, "agreement_with_torch": 0.2}
    results.per_prompt = pd.concat([results.per_prompt, pd.DataFrame([diffusion])], ignore_index=True)
    results.rows = pd.DataFrame([{"status": "ok", "hardware": "cpu: test", "precision": "fp32",
                                  "attention_kernel": "sdpa", "weights": "pretrained"}])
    seen = {}
    real_save = figures._save

    def spy(fig, res, out):
        seen["axes"] = fig.axes
        return real_save(fig, res, out)

    monkeypatch.setattr(figures, "_save", spy)
    png = figures.engines_plot(results, tmp_path / "engines.png")
    assert image.imread(png).shape[0] > 200
    ar_speed, ar_agree, mdm_speed, mdm_agree = seen["axes"]  # one row per model: AR first
    assert [t.get_text() for t in ar_speed.get_legend().get_texts()] == ["llamacpp:q8_0"]
    assert [t.get_text() for t in mdm_speed.get_legend().get_texts()] == ["random · llamacpp:f32"]
    point = ar_speed.containers[0].lines[0].get_ydata()
    assert list(point) == [pytest.approx(3.0)]  # the median of the two prompts' speedups 4 and 2
    assert sorted(ar_speed.containers[0].lines[2][0].get_segments()[0][:, 1]) == [1.5, 5.0]  # slowest, fastest pair
    assert list(ar_agree.lines[0].get_ydata()) == [pytest.approx(0.75)]  # the mean agreement of the two prompts
    assert [t.get_text() for t in mdm_speed.get_xticklabels()] == ["N=64\nK=16"]
    assert list(mdm_agree.lines[0].get_ydata()) == [pytest.approx(0.2)]
    results.per_prompt = pd.DataFrame()
    with pytest.raises(ValueError, match="no per-prompt rows"):
        figures.engines_plot(results, tmp_path / "none.png")


def test_a_cuda_build_where_nvcc_is_and_layers_offloaded_only_on_a_gpu_run(monkeypatch, tiny_models, tmp_path):
    from dlm_bench.engines import pool
    from dlm_bench.engines.llamacpp import build

    monkeypatch.setattr(build.shutil, "which", lambda name: "/usr/local/cuda/bin/nvcc" if name == "nvcc" else None)
    monkeypatch.setattr(build, "gpu_visible", lambda: True)
    assert build.cmake_flags()[-1] == "-DGGML_CUDA=ON" and build._stamp()["cmake_flags"][-1] == "-DGGML_CUDA=ON"
    monkeypatch.setattr(build, "gpu_visible", lambda: False)  # nvcc without a GPU (this machine has one such)
    assert "-DGGML_CUDA=ON" not in build.cmake_flags()
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    assert "-DGGML_CUDA=ON" not in build.cmake_flags()
    llama = LlamaCpp(root=diffusion_cli.Path("/opt/l"), version="v", build_flags="", cuda=True)
    args = cli_arguments(llama, diffusion_cli.Path("m.gguf"), request(gpu_layers=999))
    assert args[args.index("-ngl") + 1] == "999"
    assert cli_arguments(llama, diffusion_cli.Path("m.gguf"), request())[args.index("-ngl") + 1] == "0"
    cpu_run = pool.EnginePool(load_experiment(write_config(tmp_path, _engine_config(tiny_models, tmp_path))),
                              torch.device("cpu"), tmp_path / "logs", progress=False)
    cpu_run._llama = llama
    assert cpu_run.gpu_layers == 0  # a CUDA build, but the run is on the CPU
    cpu_run._gpu_run = True
    assert cpu_run.gpu_layers == pool.ALL_LAYERS


@pytest.mark.integration
def test_a_failed_tool_is_one_line_of_the_callers_error_naming_its_log(tmp_path):
    from dlm_bench.engines.llamacpp.build import run_logged
    from dlm_bench.engines.llamacpp.gguf_export import ExportError

    log = tmp_path / "tool.log"
    with pytest.raises(ExportError, match=r"^converting failed \(exit 3\): last words; full log: .*tool\.log$"):
        run_logged(["sh", "-c", "echo first; echo 'last words' >&2; exit 3"], log, "converting", error=ExportError)
    assert log.read_text() == "first\nlast words\n"


def test_only_models_llama_cpp_runs_need_a_checkpoint_folder(tiny_models, tmp_path):
    """A model known by hub id can stand behind a remote OpenAI endpoint, not behind llama.cpp."""
    from dlm_bench.config import ConfigError

    data = _engine_config(tiny_models, tmp_path, engine=["openai"],
                          openai={"url": "http://127.0.0.1:9/v1", "models": ["hub-llama"]})
    data["models"].append({"name": "hub-llama", "family": "llama", "hub_id": "meta-llama/Meta-Llama-3-8B"})
    assert [c.model.name for c in expand_cells(load_experiment(write_config(tmp_path, data)))
            if c.engine == "openai"] == ["hub-llama"] * 2
    data["engines"]["openai"]["url"] = LOCAL_SERVER
    with pytest.raises(ConfigError, match="engines.engine: hub-llama has no checkpoint folder"):
        load_experiment(write_config(tmp_path, data))


class _ShortAnswers(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that stops after 3 tokens whatever max_tokens asks, and says so in usage."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in (_openai("It"), _openai(" was"), _openai(" a"),
                      _openai("", "length", {"completion_tokens": 3}), "[DONE]"):
            self.wfile.write(f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode())
            self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.mark.integration
def test_a_server_that_returns_fewer_tokens_than_asked_gives_an_error_row_not_a_throughput(tiny_models, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortAnswers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = _engine_config(tiny_models, tmp_path, engine=["torch", "openai"],
                              openai={"url": f"http://127.0.0.1:{server.server_address[1]}/v1",
                                      "models": ["tiny-llama"]})
        data["grid"]["batch_size"] = [1]
        data["diffusion"] = {"block_length": 8}
        summary = runner.run_experiment(load_experiment(write_config(tmp_path, data)), progress=False)
    finally:
        server.shutdown()
    rows = list(csv.DictReader(open(summary.csv_path)))
    (openai_row,) = [r for r in rows if r["engine"] == "openai"]
    assert openai_row["status"] == "error" and openai_row["tokens_per_s_median"] == ""
    assert openai_row["error"] == ("openai: answer 1 of 1 has 3 tokens (counted by the engine), not N_out = 16: the "
                                   "engine stopped early or ran on")
    assert summary.errors == 1 and all(r["status"] == "ok" for r in rows if r["engine"] == "torch")

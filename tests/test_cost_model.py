"""The cost model: parameter and FLOP counts by hand and against torch's own counters, the analytic
forward lists against what the generators record, the latency and memory formulas by hand, and the
fit recovering factors it was given."""

import json
import math
from pathlib import Path

import pytest
import torch

from dlm_bench.analysis.cost_model import (Ceilings, Efficiency, Generation, Overhead, kv_cache_bytes, predict_latency,
                                     predict_memory)
from dlm_bench.generation import ForwardWork
from dlm_bench.generation.work import ar_work, diffusion_work
from dlm_bench.measure.roofline import forward_flops, forward_min_bytes
from dlm_bench.models.architecture import architecture_of_config

from conftest import MASK, small_llada

ROOT = Path(__file__).resolve().parent.parent
TINY_LLAMA = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 1, "intermediate_size": 12, "vocab_size": 20}


def test_parameters_of_a_tiny_config_by_hand():
    a = architecture_of_config(TINY_LLAMA)
    # per layer: q 8x8 = 64, k and v 8x4 = 32 each, o 64; MLP 3 x 8 x 12 = 288; two norms 16 -> 496
    # 2 layers + final norm 8 = 1000; embedding and head 2 x 20 x 8 = 320
    assert (a.head_dim, a.n_params_non_embedding, a.n_params) == (4, 1000, 1320)
    assert a.kv_per_token == 2 * 2 * 1 * 4


@pytest.mark.parametrize("name", ["llama3_8b", "llada_8b", "qwen2.5_7b", "dream_7b"])
def test_the_8b_configs_count_the_published_sizes(name):
    a = architecture_of_config(json.loads((ROOT / "config" / "architectures" / f"{name}.json").read_text()))
    published = {"llama3_8b": 8.03e9, "llada_8b": 8.015581184e9, "qwen2.5_7b": 7.62e9, "dream_7b": 7.62e9}[name]
    assert a.n_params == pytest.approx(published, rel=0.005)


def test_parameter_counts_match_the_models_torch_builds():
    """Against numel() of the real modules (transformers' Llama and Qwen2, the native LLaDA)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"}))
    qwen_cfg = dict(TINY_LLAMA, model_type="qwen2")
    qwen = Qwen2ForCausalLM(Qwen2Config(**{k: v for k, v in qwen_cfg.items() if k != "model_type"}))
    llada = small_llada()
    for model, cfg in ((llama, TINY_LLAMA), (qwen, qwen_cfg), (llada, llada.config.to_official_dict())):
        assert architecture_of_config(cfg).n_params == sum(p.numel() for p in model.parameters())


def test_flops_of_one_forward_by_hand():
    a = architecture_of_config(TINY_LLAMA)
    w = ForwardWork(batch=3, query_tokens=5, attention_pairs=15, logits_tokens=1, cached_tokens=0)
    # linear layers: 1000 non-embedding parameters less 5 RMSNorm weights of 8 -> 2 x 960 x 5 = 9600;
    # head 2 x 8 x 20 x 1 = 320; attention 4 x 2 layers x 2 heads x 4 x 15 = 960
    assert forward_flops(w, a) == 3 * (9600 + 320 + 960)
    # bytes (fp32): weights 1000 + 160; per sequence embeddings 5 x 8 = 40, K/V (0 + 5) x 16 = 80,
    # hidden state 2 x 2 layers x 5 x 8 = 160
    assert forward_min_bytes(w, a, 4) == 4 * (1160 + 3 * (40 + 80 + 160))


def _counted_flops(model, *args, **kwargs) -> int:
    """FLOPs torch counts in one forward; attention on SDPA's math backend, whose matmuls the counter sees
    (it has no formula for the CPU flash kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(*args, **kwargs)
    return counter.get_total_flops()


def test_flops_match_torchs_counter_on_the_native_llada_forward():
    model = small_llada()
    a = architecture_of_config(model.config.to_official_dict())
    ids = torch.randint(0, 90, (2, 24))
    # the whole canvas, bidirectional (every query attends to every key), logits at the 8 positions of a block
    w = ForwardWork(2, 24, 24 * 24, 8, 0)
    assert _counted_flops(model, ids, logits_slice=slice(10, 18)) == forward_flops(w, a)


def test_flops_match_torchs_counter_on_the_llama_forward():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"})).eval()
    a = architecture_of_config(TINY_LLAMA)
    s = 12
    prefill = ar_work(batch=2, prompt_len=s, n_out=1)[0]
    # torch counts every (query, key) pair of the causal attention kernel, the model counts the causal half;
    # a plain forward applies the head at every position, generation at the last one only
    counted = _counted_flops(model, torch.randint(0, 20, (2, s)))
    masked_half = 2 * 4 * a.n_layers * a.n_heads * a.head_dim * (s * s - prefill.attention_pairs)
    head_elsewhere = 2 * 2 * a.d_model * a.vocab_size * (s - 1)
    assert counted == forward_flops(prefill, a) + masked_half + head_elsewhere


TOY_LLADA = {"d_model": 8, "n_layers": 3, "n_heads": 2, "n_kv_heads": 2, "mlp_hidden_size": 12, "vocab_size": 10}


def test_a_dual_cached_step_by_hand():
    """A block of 2 on a canvas of 6 (3 layers): the block's 2 queries run the layers and score all 6 keys of
    every layer; the other 4 positions' keys and values are read from the cache at every layer."""
    a = architecture_of_config(TOY_LLADA)
    # per layer: q, k, v, o 4 x 8 x 8 = 256; MLP 3 x 8 x 12 = 288; two norms 16 -> 560; 3 layers + final 8 = 1688
    assert (a.n_params_non_embedding, a.matmul_params, a.kv_per_token) == (1688, 1632, 2 * 3 * 2 * 4)
    step = diffusion_work(1, 4, 2, 2, 2, "dual")[1]  # P = 4, one block of 2, its second (cached) step
    assert step == ForwardWork(1, 2, 12, 2, 4)
    # linear 2 x 1632 x 2 = 6528; head 2 x 8 x 10 x 2 = 320; attention 4 x 3 layers x 2 heads x 4 x 12 = 1152
    assert forward_flops(step, a) == 6528 + 320 + 1152
    # bytes (bf16): weights 1688 + 80 = 1768; embeddings 2 x 8 = 16; K/V of all 6 positions, 2 x 3 layers x
    # 2 heads x 4 = 48 each: 288; hidden state read and written at each layer 2 x 3 x 2 x 8 = 96
    assert forward_min_bytes(step, a, 2) == 2 * (1768 + 16 + 288 + 96)
    # the block's first step refreshes the whole canvas: 6 queries over 6 keys, no cache read
    assert diffusion_work(1, 4, 2, 2, 2, "dual")[0] == ForwardWork(1, 6, 36, 2, 0)


def test_flops_of_a_cached_step_match_torchs_counter():
    """The native LLaDA's dual-cached step (the block's queries against the canvas buffer) counted by torch."""
    from dlm_bench.models.llada import KVSlot

    model = small_llada()
    a = architecture_of_config(model.config.to_official_dict())
    ids = torch.randint(0, 90, (2, 24))
    with torch.no_grad():
        kv = model(ids, return_kv=True).kv
    positions = torch.arange(10, 18)
    context = [KVSlot(k, v, positions) for k, v in kv]
    counted = _counted_flops(model, ids[:, 10:18], positions=positions, context=context, logits_slice=slice(0, 8))
    assert counted == forward_flops(ForwardWork(2, 8, 8 * 24, 8, 16), a)


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_the_analytic_diffusion_forwards_are_what_the_sampler_runs(cache):
    from dlm_bench.paths import DiffusionPath
    from dlm_bench.generation.diffusion import MaskedDiffusionGenerator, SamplerSettings

    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(1))
    trace = MaskedDiffusionGenerator(small_llada(), MASK, DiffusionPath("low_confidence", cache),
                                     SamplerSettings(8)).generate(prompt, 16, steps=8)
    assert trace.work == diffusion_work(2, 6, 16, 8, 8, cache)


def test_cache_accounting_by_hand():
    # P = 4, N_out = 8 in 2 blocks of 4, 2 steps per block: canvas 12
    none = diffusion_work(1, 4, 8, 4, 4, "none")
    assert none == [ForwardWork(1, 12, 144, 4, 0)] * 4
    prefix = diffusion_work(1, 4, 8, 4, 4, "prefix")
    # block 1 starts at 4: its later step runs positions 4..11 (8 queries) over the 12 keys, 4 cached;
    # block 2 starts at 8: 4 queries, 8 cached
    assert prefix == [ForwardWork(1, 12, 144, 4, 0), ForwardWork(1, 8, 96, 4, 4),
                      ForwardWork(1, 12, 144, 4, 0), ForwardWork(1, 4, 48, 4, 8)]
    dual = diffusion_work(1, 4, 8, 4, 4, "dual")
    assert dual[1] == ForwardWork(1, 4, 48, 4, 8) and dual[3] == ForwardWork(1, 4, 48, 4, 8)
    assert diffusion_work(1, 4, 8, 4, 4, "none", cfg=True)[0].batch == 2  # CFG: two sequences per forward
    assert diffusion_work(1, 4, 8, 4, 4, "dual", shift=1)[1] == ForwardWork(1, 5, 60, 4, 7)  # Dream's shift


def test_predicted_latency_by_hand():
    a = architecture_of_config(TINY_LLAMA)
    device = Ceilings("test", tflops=1e-6, tbps=1e-6, source="hand")  # 1 kFLOP/ms and 1 kB/ms
    eff = Efficiency(0.5, 0.25, {"ar:static": Overhead(call_ms=2.0, layer_ms=0.5)})
    gen = Generation("autoregressive", "static", batch=1, prompt_len=2, n_out=2)
    work = gen.work()  # a prefill of 2 tokens and one decode step
    expected = 0.0
    for w in work:
        compute = forward_flops(w, a) / (0.5 * 1e3)
        memory = forward_min_bytes(w, a, 4) / (0.25 * 1e3)
        expected += max(compute, memory) + 2.0 + 0.5 * a.n_layers
    got = predict_latency(gen, a, 4, device, eff)
    assert got.latency_ms == pytest.approx(expected) and got.forwards == 2 and got.overhead_ms == pytest.approx(6.0)
    # the prefill: 2 x 960 x 2 + 2 x 8 x 20 + 4 x 2 x 2 x 4 x 3 = 4352 FLOPs -> 8.7 ms of compute
    assert forward_flops(work[0], a) == 4352


def test_memory_by_hand_and_the_caches_each_path_keeps():
    a = architecture_of_config(TINY_LLAMA)
    ar = Generation("autoregressive", "static", batch=2, prompt_len=3, n_out=5)
    assert kv_cache_bytes(ar, a, 4) == 2 * 8 * 16 * 4  # B x (P + N_out) x K/V elements x bytes
    none = Generation("diffusion", "none", batch=2, prompt_len=4, n_out=8, steps=4, block_length=4)
    dual = Generation("diffusion", "dual", batch=2, prompt_len=4, n_out=8, steps=4, block_length=4)
    assert kv_cache_bytes(none, a, 4) == 0 and kv_cache_bytes(dual, a, 4) == 2 * 12 * 16 * 4
    m = predict_memory(none, a, 4, base_bytes=100.0)
    # the whole-canvas forward: 12 queries x (4 x 8 + 2 x 4 + 3 x 12) = 912 elements x 4 bytes, logits 2 x 4 x 20 x 4
    assert m.weights == 1320 * 4 and m.transient == 2 * (912 * 4 + 640) and m.total == 100 + 5280 + m.transient


def test_the_fit_recovers_the_factors_that_made_the_measurements():
    from dlm_bench.analysis.cost_validation import MeasuredCell, check, fit

    device = Ceilings("cpu: test", tflops=0.1, tbps=0.01, source="hand")
    truth = Efficiency(0.3, 0.6, {"ar:static": Overhead(0.4, 0.05), "diffusion:dual": Overhead(1.0, 0.2)})
    cells = []
    for d, layers in ((64, 2), (256, 4), (512, 8)):
        arch = architecture_of_config(dict(TINY_LLAMA, hidden_size=d, num_hidden_layers=layers, intermediate_size=3 * d,
                                           num_attention_heads=4, num_key_value_heads=4, vocab_size=1000))
        for gen in (Generation("autoregressive", "static", 1, 32, 32), Generation("autoregressive", "static", 8, 64, 64),
                    Generation("diffusion", "dual", 1, 32, 32, 8, 16), Generation("diffusion", "dual", 8, 64, 64, 8, 32)):
            latency = predict_latency(gen, arch, 4, device, truth).latency_ms
            cells.append(MeasuredCell(f"{d}-{gen}", f"m-{d}", arch.n_params, arch, gen, 4, latency, 0.01, math.nan))
    result = fit(cells, device)
    assert result.efficiency.e_f == pytest.approx(0.3, rel=0.1) and result.efficiency.e_b == pytest.approx(0.6, rel=0.1)
    assert all(abs(c.error) < 0.05 for c in check(cells, result))


def test_the_matmul_ceiling_by_shape_is_looked_up_by_width_and_interpolated_in_rows():
    entry = {"matmul_tflops": 0.12, "read_tbps": 0.028,
             "matmul_tflops_by_shape": {"512": {"1": 0.02, "100": 0.2}, "1024": {"1": 0.01, "100": 0.1}}}
    c = Ceilings.from_calibration("cpu", entry, "hand")
    assert c.by_shape == ((512, ((1, 0.02), (100, 0.2))), (1024, ((1, 0.01), (100, 0.1))))
    # width 600 is nearer 512 than 1024 (log distance); 10 rows is halfway from 1 to 100 in log: sqrt(0.02 x 0.2)
    assert c.tflops_at(600, 10) == pytest.approx(math.sqrt(0.02 * 0.2))
    assert c.tflops_at(900, 1) == 0.01  # nearer 1024
    assert c.tflops_at(512, 5000) == 0.2 and c.tflops_at(512, 1) == 0.02  # held at the measured ends
    assert Ceilings("gpu", 900.0, 3.0, "datasheet").tflops_at(4096, 1) == 900.0  # no shapes: the one peak


def test_a_forward_of_few_rows_is_charged_its_own_rate():
    a = architecture_of_config(TINY_LLAMA)  # d_model 8
    table = {"8": {"1": 1e-9, "10": 1e-8}}  # 1 and 10 FLOP/ms at 1 and 10 rows
    device = Ceilings.from_calibration("test", {"matmul_tflops": 1e-8, "read_tbps": 1e-3,
                                                "matmul_tflops_by_shape": table}, "hand")
    from dlm_bench.analysis.cost_model import forward_costs

    one_row, ten_rows = ForwardWork(1, 1, 5, 1, 4), ForwardWork(2, 5, 25, 1, 0)
    costs = forward_costs([one_row, ten_rows], a, 4, device, 1.0, 1.0)
    # compute ms = FLOPs / (rate x 1e12) x 1e3: the one-row step at 1 FLOP/ms, the ten-row one (B 2 x 5 tokens)
    # at 10
    assert costs[0].compute_ms == pytest.approx(forward_flops(one_row, a))
    assert costs[1].compute_ms == pytest.approx(forward_flops(ten_rows, a) / 10)


def test_the_validation_report_says_which_path_misses_its_goal_and_by_how_much():
    from types import SimpleNamespace

    from dlm_bench.analysis.cost_validation import held_out_by_path

    def cell(path, batch, error, held_out=True):
        generation = SimpleNamespace(path_key=path, batch=batch)
        return SimpleNamespace(cell=SimpleNamespace(generation=generation), error=error, held_out=held_out)

    checked = [cell("ar:eager", 8, -0.30), cell("ar:eager", 8, 0.40), cell("ar:eager", 8, -0.36),
               cell("diffusion:dual", 1, 0.05), cell("diffusion:dual", 1, -0.07), cell("ar:eager", 1, 0.9, False)]
    rows = held_out_by_path(checked)
    # ar:eager at B = 8: median of 0.30, 0.36, 0.40 is 0.36, 21 points over the 15% goal; the fit cell is left out
    assert "| ar:eager | 8 | 3 | 36.0% | missed by 21.0 points |" in rows
    assert "| diffusion:dual | 1 | 2 | 6.0% | met |" in rows
    assert not any("| ar:eager | 1 |" in r for r in rows)


def test_each_diffusion_step_is_predicted_by_hand_and_classed_by_kind():
    from dlm_bench.analysis.cost_model import predict_steps_ms, step_kind

    a = architecture_of_config(TINY_LLAMA)
    device = Ceilings("test", tflops=1e-6, tbps=1e-6, source="hand")  # 1 kFLOP/ms and 1 kB/ms
    eff = Efficiency(0.5, 0.25, {"diffusion:dual": Overhead(call_ms=1.0, layer_ms=0.25)})
    gen = Generation("diffusion", "dual", batch=1, prompt_len=4, n_out=4, steps=4, block_length=2)
    work = gen.work()
    assert [step_kind(w) for w in work] == ["whole canvas", "cached", "whole canvas", "cached"]
    by_hand = [max(forward_flops(w, a) / (0.5 * 1e3), forward_min_bytes(w, a, 4) / (0.25 * 1e3)) + 1.0
               + 0.25 * a.n_layers for w in work]
    steps = predict_steps_ms(gen, a, 4, device, eff)
    assert steps == pytest.approx(by_hand)
    assert sum(steps) == pytest.approx(predict_latency(gen, a, 4, device, eff).latency_ms)
    assert steps[1] < steps[0]  # a cached step runs 2 of the canvas's 8 positions


def test_a_fit_reads_back_as_it_was_written():
    from dlm_bench.analysis.cost_validation import Fit, fit_from_json

    device = Ceilings("cpu: test", 0.1, 0.01, "hand", ((64, ((1, 0.01), (32, 0.05))),))
    written = Fit(device, Efficiency(0.3, 0.6, {"diffusion:dual": Overhead(1.0, 0.2)}), 0.4, (100, 200), 7, 0.12)
    assert fit_from_json(json.loads(json.dumps(written.to_json()))) == written


def test_the_step_report_takes_the_days_speed_from_the_fit_sizes_only():
    from conftest import load_script

    steps = load_script("validate_steps")
    row = {"model": "m", "n_params": 1, "seq_len": 8, "cache": "dual", "step": 0, "kind": "cached"}
    rows = [dict(row, held_out=False, measured_ms=m, predicted_ms=10.0) for m in (5.0, 7.0, 9.0)]
    rows.append(dict(row, model="h", n_params=2, held_out=True, measured_ms=8.0, predicted_ms=10.0))
    assert steps.machine_scale(rows) == pytest.approx(0.7)  # the held-out row's 0.8 does not enter it
    text = steps.report(rows, "today")
    # held out: |0.7 x 10 - 8| / 8 = 12.5% scaled, |10 - 8| / 8 = 25% raw
    assert "| dual | cached | 1 | 12.5% | met | 25.0% |" in text

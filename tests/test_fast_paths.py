"""Diffusion fast samplers and caches, the AR static/compiled paths, and the roofline formulas."""

import math

import pytest
import torch

from dlm_bench.generation import ForwardWork
from dlm_bench.generation.autoregressive import StaticCacheGenerator, HFGenerateGenerator
from dlm_bench.generation.work import ar_work
from dlm_bench.paths import ARPath, DiffusionPath
from dlm_bench.generation.diffusion import (MaskedDiffusionGenerator, SamplerSettings, choose, propose_tokens,
                                            score_proposals)
from dlm_bench.measure import roofline

from conftest import MASK, small_llada as _llada



def _canvas(prompt_len=6, n_out=16, committed=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((2, prompt_len + n_out), MASK)
    x[:, :prompt_len + committed] = torch.randint(0, 90, (2, prompt_len + committed), generator=g)
    return x


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_forward_equals_uncached_forward_where_the_cache_is_fresh(cache):
    model = _llada()
    x = _canvas()
    start, end = 6, 14  # the block being decoded
    gen = MaskedDiffusionGenerator(model, MASK, DiffusionPath("low_confidence", cache), SamplerSettings(8))
    with torch.no_grad():
        full, kv = gen._full(x, 6, start, end, [], keep_kv=True)
        cached = gen._cached(x, start, end, kv, [])
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_cached_samplers_run_and_mostly_agree_with_the_uncached_one():
    model = _llada()
    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(3))
    ref = MaskedDiffusionGenerator(model, MASK, DiffusionPath("low_confidence"),
                                   SamplerSettings(8)).generate(prompt, 16, steps=16)
    for cache in ("prefix", "dual"):
        trace = MaskedDiffusionGenerator(model, MASK, DiffusionPath("low_confidence", cache),
                                         SamplerSettings(8)).generate(prompt, 16, steps=16)
        assert not (trace.output_ids == MASK).any() and trace.steps_executed == 16
        # the first step of each block is an exact full forward, so those commits always agree
        assert (trace.output_ids == ref.output_ids).float().mean() > 0.1
        assert trace.work[0].query_tokens == 22 and trace.work[1].query_tokens == (16 if cache == "prefix" else 8)
        assert trace.work[1].cached_tokens == 22 - trace.work[1].query_tokens


def test_threshold_one_commits_one_token_per_step():
    prompt = torch.randint(0, 90, (1, 5), generator=torch.Generator().manual_seed(1))
    trace = MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("threshold"),
                                     SamplerSettings(8, threshold=1.0)).generate(
        prompt, 16, steps=16)
    assert trace.committed_per_step == [1.0] * 16 and not (trace.output_ids == MASK).any()


def test_threshold_near_zero_finishes_each_block_in_one_step():
    prompt = torch.randint(0, 90, (2, 5), generator=torch.Generator().manual_seed(1))
    trace = MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("threshold"),
                                     SamplerSettings(8, threshold=1e-9)).generate(
        prompt, 16, steps=16)
    assert trace.steps_executed == 2 and trace.committed_per_step == [8.0, 8.0] and trace.forward_passes == 2


def test_threshold_respects_the_step_budget():
    prompt = torch.randint(0, 90, (1, 5), generator=torch.Generator().manual_seed(1))
    trace = MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("threshold"),
                                     SamplerSettings(8, threshold=1.0, threshold_steps="cap")
                                     ).generate(prompt, 16, steps=4)
    assert trace.committed_per_step == [1.0, 7.0, 1.0, 7.0]  # 2 steps per block: one token, then everything left
    # as Fast-dLLM runs it (the default): no budget; at threshold 1.0 one token a step, every block to its end
    unbounded = MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("threshold"), SamplerSettings(8, threshold=1.0))
    assert unbounded.generate(prompt, 16, steps=4).committed_per_step == [1.0] * 16


def test_entropy_ordering_on_hand_built_logits():
    logits = torch.zeros(1, 3, 96)
    logits[0, 0, :10] = 5.0   # spread over 10 tokens: high entropy
    logits[0, 1, 7] = 30.0    # one token: lowest entropy
    logits[0, 2, :3] = 5.0    # spread over 3 tokens: medium
    x0, masked_logits = propose_tokens(logits, 0.0, MASK)
    score = score_proposals(masked_logits, x0, "entropy")
    assert score.argsort(descending=True)[0].tolist() == [1, 2, 0]
    chosen = choose(score, torch.ones(1, 3, dtype=torch.bool), k=1, threshold=None, commit_all=False)
    assert chosen.tolist() == [[False, True, False]] and x0[0, 1] == 7


def test_threshold_choice_includes_the_best_and_everything_above():
    score = torch.tensor([[0.2, 0.95, 0.5, 0.91]])
    masked = torch.tensor([[True, True, True, False]])
    assert choose(score, masked, None, 0.9, False).tolist() == [[False, True, False, False]]
    assert choose(torch.tensor([[0.2, 0.3, 0.1, 0.0]]), masked, None, 0.9, False).tolist() == [[False, True, False, False]]


@pytest.mark.integration
@pytest.mark.parametrize("compiled", [False, True], ids=["static", "static_compiled"])
def test_static_paths_emit_the_eager_tokens(tiny_models, compiled):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype=torch.float32).eval()
    prompt = torch.randint(0, 200, (2, 10), generator=torch.Generator().manual_seed(0))
    eager = HFGenerateGenerator(model).generate(prompt, 12).output_ids
    gen = StaticCacheGenerator(model, compile=compiled)
    for _ in range(2):  # the cache is reused and reset between generations
        marks = []
        trace = gen.generate(prompt, 12, marker=lambda: marks.append(0) or len(marks))
        assert torch.equal(trace.output_ids, eager)
        assert len(trace.marks) == 12 and trace.forward_passes == 12


class _TakesCache(torch.nn.Module):
    def forward(self, input_ids, cache_position=None, cache=None, use_cache=False):
        raise NotImplementedError


class _TakesPastKeyValues(torch.nn.Module):
    def forward(self, input_ids, cache_position=None, past_key_values=None, use_cache=False):
        raise NotImplementedError


def test_the_static_path_passes_its_cache_under_the_name_the_forward_declares(tiny_models, recwarn):
    from transformers import AutoModelForCausalLM

    from dlm_bench.generation.autoregressive import cache_keyword

    assert cache_keyword(_TakesCache()) == "cache"
    assert cache_keyword(_TakesPastKeyValues()) == "past_key_values"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype=torch.float32).eval()
    StaticCacheGenerator(model, compile=False).generate(torch.zeros((1, 4), dtype=torch.long), 3)
    ours = [w for w in recwarn if "past_key_values" in str(w.message) or "deprecat" in str(w.message).lower()]
    assert not ours, [str(w.message) for w in ours]


def test_flop_and_byte_counts_match_a_hand_calculation():
    arch = roofline.Architecture(n_layers=2, d_model=8, n_heads=2, n_kv_heads=1, head_dim=4, mlp_hidden=16,
                                 vocab_size=10, n_params=0, n_params_non_embedding=1000)
    w = ForwardWork(batch=3, query_tokens=5, attention_pairs=25, logits_tokens=2, cached_tokens=4)
    # per sequence: 2*(1000 - 5 norms of 8)*5 + 2*8*10*2 + 4*2*(2*4)*25 = 9600 + 320 + 1600 = 11520; x3 sequences
    assert roofline.forward_flops(w, arch) == 3 * 11520
    # weights (1000 + 80) once; per sequence: 5*8 embedding + (4+5)*2*2*1*4 kv + 2*2*5*8 hidden = 40+144+160
    assert roofline.forward_min_bytes(w, arch, 2) == (1080 + 3 * 344) * 2
    assert roofline.achieved_tflops(2e12, 500.0) == pytest.approx(4.0)
    assert roofline.utilisation(4.0, 8.0) == 0.5
    # 2e12 FLOPs at 4 TFLOP/s = 0.5 s; 3e12 bytes at 2 TB/s = 1.5 s: the memory side bounds it
    assert roofline.roofline_seconds(2e12, 3e12, 4.0, 2.0) == pytest.approx(1.5)
    assert roofline.roofline_seconds(8e12, 3e12, 4.0, 2.0) == pytest.approx(2.0)
    assert math.isnan(roofline.roofline_seconds(2e12, 3e12, float("nan"), 2.0))


def test_ar_work_counts_prefill_and_decode_steps():
    work = ar_work(batch=2, prompt_len=4, n_out=3)
    assert work[0] == ForwardWork(2, 4, 10, 1, 0)
    assert work[1:] == [ForwardWork(2, 1, 5, 1, 4), ForwardWork(2, 1, 6, 1, 5)]


def test_peaks_prefer_calibration_and_know_common_gpus(tmp_path):
    assert roofline.datasheet_peaks("NVIDIA H100 80GB HBM3").tflops == 989.0
    assert roofline.datasheet_peaks("NVIDIA H100 PCIe").tbps == 2.0
    assert roofline.datasheet_peaks("NVIDIA A100-SXM4-80GB").tbps == 2.039
    assert roofline.datasheet_peaks("cpu: AMD EPYC").source == "none"
    cal = tmp_path / "calibration.json"
    cal.write_text('{"NVIDIA H100 80GB HBM3": {"matmul_tflops": 798.0, "copy_tbps": 3.0}}')
    peaks = roofline.peaks_for("NVIDIA H100 80GB HBM3", cal)
    assert (peaks.tflops, peaks.tbps) == (798.0, 3.0) and peaks.source.startswith("calibration")


def test_calibration_measures_positive_ceilings(tmp_path):
    from dlm_bench.measure.calibration import measure_ceilings, write_calibration

    entry = measure_ceilings(torch.device("cpu"), matmul_size=64, copy_mib=1, repeats=2)
    assert entry["matmul_tflops"] > 0 and entry["copy_tbps"] > 0 and entry["read_tbps"] > 0
    path = write_calibration(tmp_path / "c.json", entry)
    assert entry["hardware"] in path.read_text()


@pytest.mark.integration
def test_runner_records_agreement_and_roofline_for_cached_cells(mini_config):
    import csv

    import dlm_bench.sweep.runner as runner
    from dlm_bench.config import load_experiment

    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1], "steps": [4],
                                        "sampler": ["low_confidence", "threshold"], "cache": ["none", "dual"]})
    summary = runner.run_experiment(exp, progress=False)
    assert summary.ok == 4
    rows = list(csv.DictReader(open(summary.csv_path)))
    for r in rows:
        assert float(r["flops_per_generation"]) > 0 and float(r["min_bytes_per_generation"]) > 0
        assert r["peak_source"] == "none" and r["mfu"] == ""  # no peak figures for a CPU
        if r["cache"] == "dual":
            assert 0.0 <= float(r["agreement_with_uncached"]) <= 1.0
        else:
            assert r["agreement_with_uncached"] == ""
    assert {r["threshold"] for r in rows} == {"", "0.9"}


@pytest.mark.integration
def test_bench_samplers_prints_every_path(mini_config, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    out_md = tmp_path / "bench.md"
    out = subprocess.run([sys.executable, "scripts/bench_samplers.py", "--config", str(mini_config), "--batch_size", "1",
                          "--seq_len", "32", "--steps", "8", "--output", str(out_md)], cwd=ROOT, capture_output=True,
                         text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    table = out_md.read_text()
    for path in ("eager", "static", "static_compiled", "low_confidence/none", "random/prefix", "entropy/dual",
                 "threshold/dual t=0.9", "local_leap/prefix t=0.9 κ=0.75 W=4"):
        assert f"| {path} |" in table
    assert table.count("| ok |") == 6 * 3 + 3 and "random-init: timing only" in table  # 6 samplers x 3 caches, 3 AR


class ConcatenatingCache(MaskedDiffusionGenerator):
    """The cached step as it was before the in-place buffers: the context is cut out of the block's
    first-step keys/values and concatenated in front of this step's (prefix: the canvas before the
    block; dual: before and after it)."""

    def _cached(self, x, start, end, kv, work):
        first = start - self.shift
        if self.path.cache == "prefix":
            context, ids = [(k[:, :, :first], v[:, :, :first]) for k, v in kv], x[:, first:]
        else:
            context = [(torch.cat([k[:, :, :first], k[:, :, end:]], 2), torch.cat([v[:, :, :first], v[:, :, end:]], 2))
                       for k, v in kv]
            ids = x[:, first:end]
        positions = torch.arange(first, first + ids.shape[1])
        return self.model(ids, positions=positions, context=context, logits_slice=slice(0, end - start)).logits


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("sampler", ["low_confidence", "entropy", "threshold"])
def test_in_place_cache_buffers_give_the_tokens_of_concatenated_caches(cache, sampler):
    model = _llada()
    for seed in range(3):
        prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(seed))
        new = MaskedDiffusionGenerator(model, MASK, DiffusionPath(sampler, cache),
                                       SamplerSettings(8)).generate(prompt, 16, steps=8)
        old = ConcatenatingCache(model, MASK, DiffusionPath(sampler, cache),
                                 SamplerSettings(8)).generate(prompt, 16, steps=8)
        assert torch.equal(new.output_ids, old.output_ids), (cache, sampler, seed)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_a_cached_step_writes_its_keys_into_the_block_buffer_in_place(cache):
    model = _llada()
    x = _canvas()
    gen = MaskedDiffusionGenerator(model, MASK, DiffusionPath("low_confidence", cache), SamplerSettings(8))
    with torch.no_grad():
        _, kv = gen._full(x, 6, 6, 14, [], keep_kv=True)
        buffers = [(k.data_ptr(), v.data_ptr()) for k, v in kv]
        x[:, 9] = 5  # a token committed since the block's first step
        before = [k.clone() for k, _ in kv]
        gen._cached(x, 6, 14, kv, [])
        _, fresh = gen._full(x, 6, 6, 14, [], keep_kv=True)
    assert [(k.data_ptr(), v.data_ptr()) for k, v in kv] == buffers  # the same memory, updated
    last = 22 if cache == "prefix" else 14
    for layer, (k, _) in enumerate(kv):
        assert torch.equal(k[:, :, :6], before[layer][:, :, :6])  # the prefix is never rewritten
        assert not torch.equal(k[:, :, 6:last], before[layer][:, :, 6:last])
    # layer 0's keys depend only on the tokens: the rewritten span equals a fresh full forward there
    torch.testing.assert_close(kv[0][0][:, :, 6:last], fresh[0][0][:, :, 6:last])


@pytest.mark.integration
def test_agreement_compares_cached_and_uncached_runs_from_the_same_seed(mini_config):
    """With one step per block every step is a block's first, exact full forward, so a cached run gives
    the uncached tokens; random remasking agrees fully only when both runs draw the same scores."""
    import csv

    import dlm_bench.sweep.runner as runner
    from dlm_bench.config import load_experiment

    exp = load_experiment(mini_config, {"models": ["tiny-llada"], "batch_size": [1], "steps": [2],
                                        "sampler": ["random", "low_confidence"], "cache": ["prefix", "dual"]})
    summary = runner.run_experiment(exp, progress=False)
    rows = list(csv.DictReader(open(summary.csv_path)))
    assert len(rows) == 4 and all(float(r["agreement_with_uncached"]) == 1.0 for r in rows)


def _compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far (dynamo's own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.mark.integration
@pytest.mark.slow
def test_compiled_diffusion_forward_emits_the_eager_tokens_with_one_graph_per_step_kind():
    torch._dynamo.reset()
    # in float64: the compiled kernels' reassociation (about 1e-7 in float32, CPU-dependent) cannot reorder
    # the near-tied confidences of random weights, so the tokens must agree exactly
    model = _llada().double()
    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(5))
    for cache, sampler, most_graphs in (("dual", "low_confidence", 2), ("prefix", "threshold", 3),
                                        ("none", "low_confidence", 1)):
        eager = MaskedDiffusionGenerator(model, MASK, DiffusionPath(sampler, cache),
                                         SamplerSettings(8)).generate(prompt, 32, steps=16)
        compiled = MaskedDiffusionGenerator(model, MASK, DiffusionPath(sampler, cache, "compiled"), SamplerSettings(8))
        before = _compiled_graphs()
        trace = compiled.generate(prompt, 32, steps=16)
        # 4 blocks at different canvas offsets: one graph for the full forward and one for the cached step
        # (a prefix cache's suffix shrinks per block, so its cached step gets one static and one symbolic
        # graph); Python-int positions would compile once per block
        assert _compiled_graphs() - before <= most_graphs, cache
        assert torch.equal(trace.output_ids, eager.output_ids), (cache, sampler)
        assert trace.forward_passes == eager.forward_passes
        assert torch.equal(compiled.generate(prompt, 32, steps=16).output_ids, eager.output_ids)
    # the compiled forward's logits are the eager ones up to reassociation in fused kernels (samplers that
    # rank near-tied scores, such as entropy on these random weights, can then differ in a token)
    model = _llada()  # float32, as it runs
    compiled = MaskedDiffusionGenerator(model, MASK, DiffusionPath("low_confidence", "none", "compiled"),
                                        SamplerSettings(8))
    x = torch.randint(0, 90, (2, 38), generator=torch.Generator().manual_seed(6))
    rows = torch.arange(6, 14)
    with torch.inference_mode():
        torch.testing.assert_close(compiled.forward(x, logits_slice=rows).logits, model(x, logits_slice=rows).logits,
                                   atol=1e-5, rtol=1e-5)


def test_an_unknown_forward_is_refused():
    with pytest.raises(ValueError, match="forward: 'fast' is not allowed; allowed: eager, compiled"):
        MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("low_confidence", "none", "fast"), SamplerSettings(8))


def test_local_leap_commits_anchors_and_their_confident_neighbours_within_the_window():
    score = torch.tensor([[0.95, 0.8, 0.6, 0.8, 0.3, 0.85]])
    masked = torch.ones_like(score, dtype=torch.bool)
    # one anchor (0.95 >= 0.9) at position 0; relaxed threshold 0.7
    assert choose(score, masked, None, 0.9, False, 0.7, 1).tolist() == [[True, True, False, False, False, False]]
    assert choose(score, masked, None, 0.9, False, 0.7, 3).tolist() == [[True, True, False, True, False, False]]
    assert choose(score, masked, None, 0.9, False, 0.7, 0).tolist() == [[True, False, False, False, False, False]]
    # a committed position is neither an anchor nor a leap; without an anchor only the best one commits
    masked[0, 0] = False
    assert choose(score, masked, None, 0.9, False, 0.7, 5).tolist() == [[False, False, False, False, False, True]]


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_local_leap_without_relaxation_is_the_threshold_sampler(cache):
    model = _llada()
    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(4))
    for threshold, window in ((0.05, 3), (0.2, 0)):
        common = dict(threshold=threshold, threshold_steps="unbounded")
        reference = MaskedDiffusionGenerator(model, MASK, DiffusionPath("threshold", cache),
                                             SamplerSettings(8, **common)).generate(prompt, 16, steps=8)
        same = MaskedDiffusionGenerator(model, MASK, DiffusionPath("local_leap", cache),
                                        SamplerSettings(8, leap_relaxed=threshold, leap_window=window, **common)
                                        ).generate(prompt, 16, steps=8)
        assert torch.equal(same.output_ids, reference.output_ids) and same.steps_executed == reference.steps_executed
    with pytest.raises(ValueError, match="leap_relaxed 0.95 and leap_window 4 are not allowed"):
        MaskedDiffusionGenerator(model, MASK, DiffusionPath("local_leap"),
                                 SamplerSettings(8, threshold=0.9, leap_relaxed=0.95))


@pytest.mark.parametrize("sampler", ["low_confidence", "entropy", "margin", "threshold", "local_leap", "random"])
@pytest.mark.parametrize("cache", ["none", "dual"])
def test_a_batch_gives_each_prompt_the_tokens_it_gets_alone_unless_the_sampler_draws_per_sequence(sampler, cache):
    """Quality is scored at one batch size and stands for every B: true token for token for every sampler that
    draws nothing per sequence (float64, so that a batched matmul's rounding cannot reorder near-ties)."""
    from dlm_bench import registry

    model = _llada().double()
    prompts = torch.randint(0, 90, (4, 6), generator=torch.Generator().manual_seed(5))

    def run(ids):
        torch.manual_seed(11)
        return MaskedDiffusionGenerator(model, MASK, DiffusionPath(sampler, cache),
                                        SamplerSettings(8, threshold=0.5, leap_relaxed=0.4)
                                        ).generate(ids, 16, steps=8).output_ids

    alone = torch.cat([run(prompts[i:i + 1]) for i in range(4)])
    together = run(prompts)
    if registry.SAMPLERS[sampler].draws_per_sequence:
        # uniform scores drawn over the [B, S] canvas at every step: a batch consumes the random numbers differently
        assert not torch.equal(together, alone)
    else:
        assert torch.equal(together, alone)


@pytest.fixture
def _tiny_llama(tiny_models):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype=torch.float64).eval()


@pytest.mark.parametrize("path", ["eager", "static"])
def test_greedy_ar_decoding_gives_each_prompt_the_same_tokens_in_a_batch(path, _tiny_llama):
    from dlm_bench.generation.autoregressive import make_ar_generator

    prompts = torch.randint(5, 90, (3, 6), generator=torch.Generator().manual_seed(2))
    gen = make_ar_generator(_tiny_llama, ARPath(path))
    alone = torch.cat([gen.generate(prompts[i:i + 1], 8).output_ids for i in range(3)])
    assert torch.equal(gen.generate(prompts, 8).output_ids, alone)


def test_nucleus_keeps_the_fewest_most_probable_tokens_that_reach_top_p():
    from dlm_bench.generation.autoregressive import nucleus, penalize_repeats

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    # by hand: 0.5 alone is below 0.7, 0.5 + 0.3 reaches it: keep the first two, renormalised
    assert torch.allclose(nucleus(probs, 0.7), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert torch.equal(nucleus(probs, 1.0), probs)
    assert torch.allclose(nucleus(probs, 0.1), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # the top token always
    # transformers' rule: a seen token's positive logit divided, a negative one multiplied, by the penalty
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    seen = torch.tensor([[0, 1, 1]])
    assert torch.allclose(penalize_repeats(logits, seen, 2.0), torch.tensor([[1.0, -2.0, 3.0, 0.5]]))


@pytest.mark.parametrize("path", ["eager", "static"])
def test_a_sampled_ar_decoding_is_reproducible_with_its_seed_and_differs_from_greedy(path, _tiny_llama):
    from dlm_bench.generation.autoregressive import make_ar_generator

    prompts = torch.randint(5, 90, (2, 6), generator=torch.Generator().manual_seed(4))
    sampled = make_ar_generator(_tiny_llama, ARPath(path, temperature=0.7, top_p=0.9, repetition_penalty=1.1))

    def run(seed):
        torch.manual_seed(seed)
        return sampled.generate(prompts, 12).output_ids

    first = run(3)
    assert torch.equal(run(3), first) and not torch.equal(run(4), first)
    greedy = make_ar_generator(_tiny_llama, ARPath(path)).generate(prompts, 12).output_ids
    assert not torch.equal(first, greedy) and first.shape == greedy.shape == (2, 12)


def test_an_ar_paths_decode_mode_and_sampling_reach_its_generator(_tiny_llama):
    from dlm_bench.generation.autoregressive import HFGenerateGenerator, StaticCacheGenerator, make_ar_generator

    eager = make_ar_generator(_tiny_llama, ARPath("eager"))
    assert type(eager) is HFGenerateGenerator and eager.temperature == 0.0
    static = make_ar_generator(_tiny_llama, ARPath("static", 0.7, 0.9, 1.1))
    assert type(static) is StaticCacheGenerator and static.step.__name__ == "_decode_one"
    assert (static.temperature, static.top_p, static.repetition_penalty) == (0.7, 0.9, 1.1)
    unset = make_ar_generator(_tiny_llama, ARPath("static", 0.7))  # an unset nucleus and penalty: none
    assert (unset.top_p, unset.repetition_penalty) == (1.0, 1.0)

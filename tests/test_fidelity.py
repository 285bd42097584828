"""Reference fidelity: exact N_out on every AR path, Dream's schedule and scoring, the threshold
sampler's step semantics, and random draws laid out as the reference lays them out.

Expectations are hand-computed schedules and small fixed logits, or a short loop written here
from the published algorithm, never the project's own output."""

import math

import pytest
import torch

from dlm_bench.generation.autoregressive import HFGenerateGenerator, StaticCacheGenerator, check_exact_n_out
from dlm_bench.paths import DiffusionPath
from dlm_bench.generation.diffusion import (MaskedDiffusionGenerator, SamplerSettings, dream_schedule,
                                            dream_transfer_probabilities, score_proposals, transfer_schedule,
                                            uniform)

from conftest import MASK, small_llada as _llada



# ----------------------------------------------------------------- AR: exactly N_out real tokens

@pytest.fixture(scope="module")
def eos_loving_qwen2(tiny_models):
    """The tiny Qwen2 with its EOS logit raised by 50 in the last row of any batch: EOS is that row's
    most likely token at every step."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["qwen2"]), dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id

    def boost(module, inputs, output):
        output = output.clone()
        output[-1, :, eos] += 50.0
        return output

    model.lm_head.register_forward_hook(boost)
    return model, eos


@pytest.mark.parametrize("batch", [1, 4])
def test_eager_generate_keeps_going_past_eos_in_every_row(eos_loving_qwen2, batch):
    model, eos = eos_loving_qwen2
    prompt = torch.randint(5, 200, (batch, 8), generator=torch.Generator().manual_seed(0))
    eager = HFGenerateGenerator(model).generate(prompt, 12).output_ids
    # the boosted row emits EOS at every one of its 12 steps: no padding after the first one
    assert eager[-1].tolist() == [eos] * 12
    # the native loop has no EOS logic at all: the eager path must give the same tokens in every row
    static = StaticCacheGenerator(model, compile=False).generate(prompt, 12).output_ids
    assert torch.equal(eager, static)


def test_exact_n_out_check_catches_a_padded_row_and_passes_real_tokens():
    eos, pad = {2}, 0
    check_exact_n_out(torch.tensor([[5, 2, 7, 2], [2, 2, 2, 2]]), 2, 4, eos, pad)  # EOS as an ordinary token
    check_exact_n_out(torch.tensor([[5, 6, 7, 0]]), 1, 4, eos, pad)  # a pad id without an EOS before it
    with pytest.raises(RuntimeError, match=r"rows \[1\]"):
        check_exact_n_out(torch.tensor([[5, 6, 7, 8], [9, 2, 0, 0]]), 2, 4, eos, pad)
    with pytest.raises(RuntimeError, match="expected \\(2, 4\\)"):
        check_exact_n_out(torch.tensor([[5, 6, 7]]), 2, 4, eos, pad)


# ----------------------------------------------------------------- Dream's schedule

def test_dream_schedule_by_hand():
    # t = linspace(1, 1e-3, 5) = 1, .75025, .5005, .25075, .001; masked 32 -> 25 -> 17 -> 9
    # step 0: int(32 * (1 - .75025))        = int(7.992) = 7
    # step 1: int(25 * (1 - .5005 / .75025)) = int(8.32)  = 8
    # step 2: int(17 * (1 - .25075 / .5005)) = int(8.48)  = 8;  last step: the 9 left
    assert dream_schedule(32, 4, 1e-3) == [7, 8, 8, 9]
    # 8 masked over 8 steps: the first step commits int(8 * .124875) = 0, then one per step, 2 at the end
    assert dream_schedule(8, 8, 1e-3) == [0, 1, 1, 1, 1, 1, 1, 2]
    assert transfer_schedule(8, 8) == [1] * 8  # LLaDA's even split of the same block
    probs = dream_transfer_probabilities(4, 1e-3)
    assert probs[0] == pytest.approx(0.24975, abs=1e-6) and probs[-1] == 1.0


class FixedLogits(torch.nn.Module):
    """A stand-in model returning the same block logits every call (positions after the prompt)."""

    def __init__(self, block_logits: torch.Tensor, prompt_len: int, shift: bool = False):
        super().__init__()
        self.block_logits, self.prompt_len, self.seen = block_logits, prompt_len, []
        self.config = type("C", (), {"shift_logits": shift})()

    def forward(self, ids, logits_slice=None, **kw):
        self.seen.append(ids[0, self.prompt_len:].clone())
        logits = torch.zeros(ids.shape[0], ids.shape[1], self.block_logits.shape[-1])
        first = self.prompt_len - int(self.config.shift_logits)
        logits[:, first:first + self.block_logits.shape[0]] = self.block_logits
        return type("O", (), {"logits": logits[:, logits_slice], "kv": None})()


def _peaked(vocab, rows):
    """Logits [len(rows), vocab]; row i puts `logit` on `token` (others 0)."""
    out = torch.zeros(len(rows), vocab)
    for i, (token, logit) in enumerate(rows):
        out[i, token] = logit
    return out


def test_dream_schedule_commits_its_counts_in_confidence_order():
    # 8 positions, ever more confident towards the end: maskgit_plus commits from the right
    logits = _peaked(50, [(3, 1.0 + i) for i in range(8)])
    model = FixedLogits(logits, 4, shift=True)  # Dream: block position i is read from the output at i - 1
    trace = MaskedDiffusionGenerator(model, 49, DiffusionPath("low_confidence"),
                                     SamplerSettings(8, schedule="dream")).generate(
        torch.zeros(1, 4, dtype=torch.long), 8, steps=8)
    assert trace.committed_per_step == [0, 1, 1, 1, 1, 1, 1, 2]
    assert trace.output_ids[0].tolist() == [3] * 8 and trace.steps_executed == 8
    # what the model saw before each step: nothing committed, then positions 7, 6, ..., 2, then 1 and 0 last
    committed = [[i for i, t in enumerate(canvas.tolist()) if t != 49] for canvas in model.seen]
    assert committed == [[], [], [7], [6, 7], [5, 6, 7], [4, 5, 6, 7], [3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7]]


def test_margin_and_entropy_scores_by_hand():
    vocab = 6
    logits = torch.full((1, 2, vocab), float("-inf"))
    logits[0, 0, :2] = torch.tensor([0.0, math.log(3.0)])  # p = .25, .75: margin .5
    logits[0, 1, :3] = torch.tensor([0.0, math.log(4.0), math.log(5.0)])  # p = .1, .4, .5: margin .1
    x0 = logits.argmax(-1)
    margin = score_proposals(logits, x0, "margin")
    assert margin[0].tolist() == pytest.approx([0.5, 0.1], abs=1e-6)
    entropy = score_proposals(logits, x0, "entropy")
    # sum p log(p + 1e-10): .25 ln .25 + .75 ln .75 = -.562335; .1 ln .1 + .4 ln .4 + .5 ln .5 = -.943348
    assert entropy[0].tolist() == pytest.approx([-0.562335, -0.943348], abs=1e-5)


def test_dream_origin_draws_over_the_masked_positions_only():
    logits = _peaked(50, [(7, 5.0)] * 8)
    gen = MaskedDiffusionGenerator(FixedLogits(logits, 4), 49, DiffusionPath("random"),
                                   SamplerSettings(8, schedule="dream"))
    torch.manual_seed(11)
    trace = gen.generate(torch.zeros(1, 4, dtype=torch.long), 8, steps=4)
    # the same draws by hand: per step, one uniform per masked position, row-major, compared with p
    torch.manual_seed(11)
    masked, expected = [True] * 8, []
    for p in dream_transfer_probabilities(4, 1e-3):
        draws = iter(torch.rand(sum(masked)).tolist())
        hits = [m and next(draws) < p for m in masked]
        masked = [m and not h for m, h in zip(masked, hits)]
        expected.append(float(sum(hits)))
    assert trace.committed_per_step == expected and sum(expected) == 8
    assert trace.output_ids[0].tolist() == [7] * 8


def test_each_family_defaults_to_its_references_own_choices(mini_config, tiny_models):
    import yaml

    from dlm_bench.config import expand_cells, load_experiment

    data = yaml.safe_load(mini_config.read_text())
    data["models"][1]["family"] = "llada"
    data["diffusion"].update(sampler=["threshold", "margin"], temperature=0.5)
    mini_config.write_text(yaml.safe_dump(data))
    cells = [c for c in expand_cells(load_experiment(mini_config)) if c.model.kind == "diffusion"]
    # the references' own choices by default: Fast-dLLM's unbounded threshold loop, generate.py's canvas noise
    assert {c.decoding.schedule for c in cells} == {"llada"} and {c.decoding.eps for c in cells} == {None}
    assert {c.decoding.threshold_steps for c in cells if c.decoding.sampler == "threshold"} == {"unbounded"}
    assert {c.decoding.threshold_steps for c in cells if c.decoding.sampler == "margin"} == {None}
    assert {c.decoding.noise_layout for c in cells} == {"canvas"}
    data["diffusion"].update(schedule="dream", eps=0.01, threshold_steps="cap", noise_layout="block")
    mini_config.write_text(yaml.safe_dump(data))
    cells = [c for c in expand_cells(load_experiment(mini_config)) if c.model.kind == "diffusion"]
    assert {(c.decoding.schedule, c.decoding.eps, c.decoding.noise_layout) for c in cells} == {("dream", 0.01, "block")}
    assert {c.decoding.threshold_steps for c in cells if c.decoding.sampler == "threshold"} == {"cap"}
    data["models"][1] = {"name": "tiny-dream", "family": "dream", "path": str(tiny_models["dream"])}
    data["diffusion"] = {"block_length": 8, "sampler": ["threshold"], "temperature": 0.5}
    mini_config.write_text(yaml.safe_dump(data))  # Dream gets its own schedule without being told
    cells = [c for c in expand_cells(load_experiment(mini_config)) if c.model.kind == "diffusion"]
    assert {(d.schedule, d.eps, d.threshold_steps, d.noise_layout) for d in (c.decoding for c in cells)} == \
        {("dream", 1e-3, "unbounded", "canvas")}


# ----------------------------------------------------------------- threshold step semantics

def test_unbounded_threshold_runs_each_block_until_empty_whatever_the_steps():
    prompt = torch.randint(0, 90, (1, 5), generator=torch.Generator().manual_seed(1))
    # threshold 1.0 commits exactly one token per step (the best), so each block of 8 needs 8 steps
    unbounded = MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("threshold"),
                                         SamplerSettings(8, threshold=1.0, threshold_steps="unbounded")
                                         ).generate(prompt, 16, steps=4)
    assert unbounded.committed_per_step == [1.0] * 16 and unbounded.steps_executed == 16
    capped = MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("threshold"),
                                      SamplerSettings(8, threshold=1.0, threshold_steps="cap")
                                      ).generate(prompt, 16, steps=4)
    assert capped.committed_per_step == [1.0, 7.0, 1.0, 7.0] and capped.steps_executed == 4
    assert not (unbounded.output_ids == MASK).any()


# ----------------------------------------------------------------- seeded sampling like the reference

def test_canvas_draws_are_the_reference_draws_sliced():
    torch.manual_seed(3)
    block = uniform((2, 4, 5), torch.float64, torch.device("cpu"), canvas=(10, 3))
    torch.manual_seed(3)
    full = torch.rand(2, 10, 5, dtype=torch.float64)
    assert torch.equal(block, full[:, 3:7])


def _reference_loop(model, prompt, n_out, steps, block_length, temperature, remasking):
    """LLaDA's published sampling loop, written out for this test: full-canvas logits, float64 Gumbel
    noise over the whole canvas, uniform scores over the whole canvas for random remasking, positions
    after the block excluded, the even-split schedule, top-k per row."""
    x = torch.cat([prompt, torch.full((prompt.shape[0], n_out), MASK)], dim=1)
    p_len, blocks = prompt.shape[1], n_out // block_length
    for b in range(blocks):
        counts = transfer_schedule(block_length, steps // blocks)
        for k in counts:
            mask_index = x == MASK
            logits = model(x).logits
            logits[..., MASK] = float("-inf")  # the project never proposes the mask token
            noisy = logits.to(torch.float64)
            if temperature > 0:
                noisy = noisy.exp() / (-torch.log(torch.rand_like(noisy))) ** temperature
            x0 = noisy.argmax(-1)
            if remasking == "low_confidence":
                conf = torch.softmax(logits.float(), -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            else:
                conf = torch.rand(x0.shape)
            conf[:, p_len + (b + 1) * block_length:] = float("-inf")
            conf = torch.where(mask_index, conf, torch.tensor(float("-inf")))
            for row in range(x.shape[0]):
                idx = conf[row].topk(k).indices
                x[row, idx] = x0[row, idx]
    return x[:, p_len:]


@pytest.mark.parametrize("remasking,temperature", [("low_confidence", 0.8), ("random", 0.0), ("random", 0.8)])
def test_seeded_canvas_layout_reproduces_the_reference_loop(remasking, temperature):
    model = _llada(2)
    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(4))
    torch.manual_seed(21)
    with torch.no_grad():
        expected = _reference_loop(model, prompt, 16, 8, 8, temperature, remasking)
    torch.manual_seed(21)
    ours = MaskedDiffusionGenerator(model, MASK, DiffusionPath(remasking),
                                    SamplerSettings(8, temperature=temperature, noise_layout="canvas")
                                    ).generate(prompt, 16, steps=8).output_ids
    assert torch.equal(ours, expected)
    if temperature > 0:  # the default block layout draws fewer numbers, so the tokens differ
        torch.manual_seed(21)
        block = MaskedDiffusionGenerator(model, MASK, DiffusionPath(remasking),
                                         SamplerSettings(8, temperature=temperature, noise_layout="block")
                                         ).generate(prompt, 16, steps=8).output_ids
        assert not torch.equal(block, expected)

import re
import pytest
import torch

from dlm_bench.paths import DiffusionPath
from dlm_bench.generation.diffusion import (MaskedDiffusionGenerator, SamplerSettings, add_gumbel_noise,
                                            transfer_schedule)

from conftest import MASK, small_llada as _llada


class CountingModel(torch.nn.Module):
    """Wraps a LLaDA model and records how many mask tokens each forward's canvas holds."""

    def __init__(self, model):
        super().__init__()
        self.model, self.masks_seen = model, []

    def forward(self, ids, **kw):
        self.masks_seen.append(int((ids == MASK).sum(dim=1)[0]))
        return self.model(ids, **kw)



@pytest.mark.parametrize("count,steps,expected", [(32, 4, [8, 8, 8, 8]), (10, 4, [3, 3, 2, 2]), (5, 5, [1] * 5),
                                                  (7, 3, [3, 2, 2])])
def test_reference_transfer_schedule(count, steps, expected):
    assert transfer_schedule(count, steps) == expected


@pytest.mark.parametrize("sampler,temperature,cfg", [("low_confidence", 0.0, 0.0), ("random", 0.0, 0.0),
                                                     ("low_confidence", 0.7, 0.0), ("low_confidence", 0.0, 1.5)])
def test_sampler_unmasks_the_schedule_and_keeps_the_prompt(sampler, temperature, cfg):
    torch.manual_seed(0)
    model = CountingModel(_llada())
    gen = MaskedDiffusionGenerator(model, MASK, DiffusionPath(sampler),
                                   SamplerSettings(8, temperature=temperature, cfg_scale=cfg))
    prompt = torch.randint(0, 90, (3, 6))
    marks = []
    trace = gen.generate(prompt, 24, steps=9, marker=lambda: marks.append(1) or len(marks))
    assert trace.output_ids.shape == (3, 24)
    assert not (trace.output_ids == MASK).any()
    # 3 blocks of 8, 3 steps per block: 3, 3, 2 per step
    assert trace.committed_per_step == [3, 3, 2] * 3 and trace.steps_executed == 9 and len(trace.marks) == 9
    # what the model saw: the masks left before each step shrink by the scheduled amount
    seen = model.masks_seen  # CFG runs both branches in one doubled batch
    expected = [24 - sum(trace.committed_per_step[:i]) for i in range(9)]
    assert seen == expected
    assert trace.forward_passes == 9 * (2 if cfg else 1)


def test_sampler_never_changes_the_prompt_or_committed_tokens():
    torch.manual_seed(1)
    model = _llada()
    prompt = torch.randint(0, 90, (2, 5))
    snapshots = []

    class Spy(torch.nn.Module):
        def forward(self, ids, **kw):
            snapshots.append(ids.clone())
            return model(ids, **kw)

    MaskedDiffusionGenerator(Spy(), MASK, DiffusionPath("low_confidence"),
                             SamplerSettings(4)).generate(prompt, 8, steps=8)
    for before, after in zip(snapshots, snapshots[1:]):
        assert torch.equal(after[:, :5], prompt)
        committed = before != MASK
        assert torch.equal(after[committed], before[committed])


def test_low_confidence_commits_the_most_confident_position():
    # a model whose logits make position 2 of the block far more confident than the others
    class Fixed(torch.nn.Module):
        def forward(self, ids, logits_slice=None, **kw):
            logits = torch.zeros(ids.shape[0], ids.shape[1], 96)
            logits[:, :, 7] = 1.0
            logits[:, 4 + 2, 9] = 20.0  # prompt length 4, block position 2
            return type("O", (), {"logits": logits[:, logits_slice], "kv": None})()

    trace = MaskedDiffusionGenerator(Fixed(), MASK, DiffusionPath("low_confidence"), SamplerSettings(4)).generate(
        torch.zeros(1, 4, dtype=torch.long), 4, steps=4)
    assert trace.output_ids[0, 2] == 9


def test_gumbel_noise_identity_at_zero_and_float64_otherwise():
    logits = torch.randn(2, 3, 5)
    assert add_gumbel_noise(logits, 0.0) is logits
    assert add_gumbel_noise(logits, 1.0).dtype == torch.float64


def test_diffusion_rejects_bad_shapes():
    gen = MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("low_confidence"), SamplerSettings(5))
    with pytest.raises(ValueError, match="does not divide"):
        gen.generate(torch.zeros(1, 3, dtype=torch.long), 8, steps=4)


@pytest.mark.parametrize("settings, says", [
    (dict(schedule="cosine"), "schedule: 'cosine' is not allowed; allowed: llada, dream"),
    (dict(threshold_steps="some"), "threshold_steps: 'some' is not allowed; allowed: cap, unbounded"),
    (dict(noise_layout="row"), "noise_layout: 'row' is not allowed; allowed: block, canvas"),
])
def test_sampler_settings_refuse_a_value_with_what_is_allowed(settings, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        SamplerSettings(8, **settings)


@pytest.mark.parametrize("path, says", [
    (DiffusionPath("best"), "sampler: 'best' is not allowed; allowed: low_confidence, "),
    (DiffusionPath("random", "disk"), "cache: 'disk' is not allowed; allowed: none, prefix, dual"),
])
def test_the_generator_refuses_a_path_the_registry_does_not_know(path, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        MaskedDiffusionGenerator(_llada(), MASK, path, SamplerSettings(8))


def test_guidance_with_a_cache_is_refused():
    with pytest.raises(ValueError, match="classifier-free guidance is not combined with a KV cache"):
        MaskedDiffusionGenerator(_llada(), MASK, DiffusionPath("low_confidence", "dual"),
                                 SamplerSettings(8, cfg_scale=1.0))


def test_an_ar_path_the_registry_does_not_know_is_refused_before_the_model_is_touched():
    from dlm_bench.generation.autoregressive import make_ar_generator
    from dlm_bench.paths import ARPath

    with pytest.raises(ValueError, match=re.escape("decode: 'turbo' is not allowed; allowed: eager, static, "
                                                   "static_compiled")):
        make_ar_generator(None, ARPath("turbo"))

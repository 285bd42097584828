"""The registries declare each family, sampler, cache, forward, decode path and engine once: the config's
allowed values, the as-published baseline, the generators' dispatch and llama.cpp's algorithm ids follow
from them."""

import dataclasses

import pytest
import torch

from dlm_bench import registry
from dlm_bench.config import (AR_DECODE_MODES, DIFFUSION_CACHES, DIFFUSION_FORWARDS, DIFFUSION_SAMPLERS, ENGINES,
                              FAMILIES, LLAMACPP_SAMPLERS, THRESHOLD_SAMPLERS)
from dlm_bench.engines.llamacpp.diffusion_cli import ALGORITHMS
from dlm_bench.generation.diffusion import score_proposals
from dlm_bench.selection.baseline import PUBLISHED_AR, PUBLISHED_DIFFUSION


def test_the_config_allows_exactly_the_registered_names():
    assert DIFFUSION_SAMPLERS == ("low_confidence", "random", "entropy", "margin", "threshold", "local_leap")
    assert THRESHOLD_SAMPLERS == ("threshold", "local_leap")
    assert DIFFUSION_CACHES == ("none", "prefix", "dual") and DIFFUSION_FORWARDS == ("eager", "compiled")
    assert AR_DECODE_MODES == ("eager", "static", "static_compiled")
    assert tuple(ENGINES) == ("torch", "llamacpp", "openai")
    assert dict(FAMILIES) == {"llama": "autoregressive", "qwen2": "autoregressive", "llada": "diffusion",
                              "dream": "diffusion"}


def test_the_as_published_paths_are_the_registered_baselines():
    # LLaDA's reference sampler without a cache on the eager forward; LLaMA through transformers' generate
    assert (PUBLISHED_DIFFUSION.sampler, PUBLISHED_DIFFUSION.cache, PUBLISHED_DIFFUSION.forward,
            PUBLISHED_AR.decode) == ("low_confidence", "none", "eager", "eager")
    with pytest.raises(ValueError):
        registry.baseline(registry._table(registry.Cache("a", baseline=True), registry.Cache("b", baseline=True)))
    with pytest.raises(ValueError):
        registry._table(registry.Cache("a"), registry.Cache("a"))


def test_llama_cpp_algorithm_ids_are_those_of_llama_diffusion_cli():
    # llama-diffusion-cli --diffusion-algorithm: 0 origin, 1 entropy, 2 margin, 3 random, 4 confidence
    assert ALGORITHMS == {"low_confidence": 4, "random": 3, "entropy": 1, "margin": 2}
    assert set(LLAMACPP_SAMPLERS) == set(ALGORITHMS)


def test_every_registered_score_rule_is_computed():
    import math

    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]])
    x0 = logits.argmax(-1)
    rows = [[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
    probs = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in rows]  # softmax by hand
    by_hand = {"confidence": [max(p) for p in probs],
               "margin": [sorted(p)[-1] - sorted(p)[-2] for p in probs],
               "entropy": [sum(q * math.log(q) for q in p) for p in probs]}
    for name, sampler in registry.SAMPLERS.items():
        assert sampler.score in registry.SCORES
        torch.manual_seed(5)
        scores = score_proposals(logits, x0, name)
        if sampler.score == "uniform":  # a float32 U(0, 1) draw per position, from the global generator
            torch.manual_seed(5)
            assert torch.equal(scores, torch.rand((1, 2), dtype=torch.float32))
        else:
            assert scores[0].tolist() == pytest.approx(by_hand[sampler.score], abs=1e-5), name


def test_a_sampler_added_to_the_registry_is_scored_by_its_rule(monkeypatch):
    added = registry.Sampler("my_confidence", "confidence", "#123456", threshold=True,
                             knobs=("threshold", "threshold_steps"))
    monkeypatch.setitem(registry.SAMPLERS, added.name, added)
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]])
    x0 = logits.argmax(-1)
    probs = torch.softmax(logits, -1)
    expected = torch.stack([probs[0, 0, 0], probs[0, 1, 2]]).unsqueeze(0)  # each proposal's own probability
    assert torch.allclose(score_proposals(logits, x0, "my_confidence"), expected)
    with pytest.raises(ValueError, match="unknown sampler"):
        score_proposals(logits, x0, "not_registered")


def test_registry_entries_are_frozen_records():
    entry = registry.SAMPLERS["local_leap"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.threshold = False
    assert {"leap_relaxed", "leap_window"} <= set(entry.knobs) and entry.threshold


def test_every_family_names_the_writer_of_its_tiny_checkpoint():
    from dlm_bench.models import tiny
    from dlm_bench.registry import resolve

    writers = {name: resolve(family.tiny) for name, family in registry.FAMILIES.items()}
    assert writers == {"llama": tiny.write_tiny_llama, "qwen2": tiny.write_tiny_qwen2, "llada": tiny.write_tiny_llada,
                       "dream": tiny.write_tiny_dream}
    # the two transformers layouts keep each family's published constants
    assert (tiny.LLAMA_LAYOUT.rope_theta, tiny.LLAMA_LAYOUT.rms_norm_eps) == (500000.0, 1e-5)
    assert (tiny.QWEN2_LAYOUT.rope_theta, tiny.QWEN2_LAYOUT.rms_norm_eps) == (1e6, 1e-6)
    assert "mask" not in tiny.QWEN2_LAYOUT.specials and tiny.LLAMA_LAYOUT.specials == tiny.LLAMA_SPECIALS


def test_a_checkpoints_model_type_names_its_family_and_its_attention_biases():
    from dlm_bench.registry import family_of_model_type

    assert family_of_model_type("Dream").name == "dream" and family_of_model_type("qwen2").qkv_bias
    assert not family_of_model_type("llama").qkv_bias and family_of_model_type("gpt2") is None
    assert family_of_model_type(None) is None

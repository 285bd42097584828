"""Dream-7B: official-layout loading, shifted logits, caches, and a sweep with its AR sibling."""

import csv
import json

import pytest
import torch
import yaml

from conftest import PROMPTS
from dlm_bench.paths import DiffusionPath
from dlm_bench.generation.diffusion import MaskedDiffusionGenerator, SamplerSettings
from dlm_bench.models import dream
from dlm_bench.models.llada import LLaDAModelLM
from dlm_bench.models.tiny import read_corpus, write_tiny_dream


def test_dream_checkpoint_uses_qwen2_names_and_round_trips(tmp_path):
    out = write_tiny_dream(tmp_path / "dream", read_corpus(PROMPTS), seed=5)
    generation = json.loads((out / "generation_config.json").read_text())
    raw_cfg = json.loads((out / "config.json").read_text())
    assert generation["mask_token_id"] == raw_cfg["mask_token_id"]
    assert generation["eos_token_id"] == generation["pad_token_id"] == raw_cfg["eos_token_id"]
    names = set(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"])
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
            "model.layers.0.self_attn.q_proj.bias", "model.layers.1.mlp.down_proj.weight"} <= names
    raw = json.loads((out / "config.json").read_text())
    assert raw["model_type"] == "Dream" and raw["architectures"] == ["DreamModel"]
    cfg = dream.native_config(raw)
    assert cfg.qkv_bias and cfg.shift_logits and cfg.n_kv_heads == 2
    reference = LLaDAModelLM(cfg)
    reference.init_random(generator=torch.Generator().manual_seed(5))
    reference = reference.to(torch.bfloat16).eval()
    loaded = dream.load_dream(out, "cpu", torch.bfloat16, kernel="sdpa")
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, loaded(ids).logits)


def test_name_mapping_is_a_bijection():
    for native in ("model.transformer.wte.weight", "model.transformer.blocks.3.v_proj.bias",
                   "model.transformer.blocks.0.ff_out.weight", "model.transformer.ff_out.weight"):
        assert dream.official_to_native(dream.native_to_official(native)) == native
    with pytest.raises(KeyError):
        dream.official_to_native("model.layers.0.self_attn.rotary_emb.inv_freq")


def test_shifted_logits_read_the_previous_position():
    class Fixed(torch.nn.Module):
        config = type("C", (), {"shift_logits": True})()

        def forward(self, ids, logits_slice=None, **kw):
            logits = torch.zeros(ids.shape[0], ids.shape[1], 50)
            logits[:, :, 7] = 1.0
            logits[:, 4 + 2 - 1, 9] = 20.0  # the output at position 5 predicts block position 2 (absolute 6)
            return type("O", (), {"logits": logits[:, logits_slice], "kv": None})()

    trace = MaskedDiffusionGenerator(Fixed(), 49, DiffusionPath("low_confidence"), SamplerSettings(4)).generate(
        torch.zeros(1, 4, dtype=torch.long), 4, steps=4)
    assert trace.output_ids[0, 2] == 9


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_dream_cached_forward_matches_uncached_where_fresh(tiny_models, cache):
    model = dream.load_dream(tiny_models["dream"], "cpu", torch.float32, kernel="sdpa")
    mask = model.config.mask_token_id
    x = torch.full((2, 22), mask)
    x[:, :9] = torch.randint(3, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    gen = MaskedDiffusionGenerator(model, mask, DiffusionPath("low_confidence", cache), SamplerSettings(8))
    with torch.no_grad():
        full, kv = gen._full(x, 6, 6, 14, [], keep_kv=True)
        cached = gen._cached(x, 6, 14, kv, [])
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


@pytest.mark.integration
def test_dream_and_qwen2_sweep(tiny_models, tmp_path):
    from dlm_bench.config import load_experiment
    from dlm_bench.sweep.runner import run_experiment

    data = {"name": "dream_test", "output_dir": str(tmp_path / "raw"), "figures_dir": str(tmp_path / "fig"),
            "device": "cpu", "precision": "fp32", "attention": "sdpa",
            "models": [{"name": "tiny-qwen2", "family": "qwen2", "path": str(tiny_models["qwen2"])},
                       {"name": "tiny-dream", "family": "dream", "path": str(tiny_models["dream"])}],
            "grid": {"batch_size": [2], "seq_len": [32], "steps": [8]},
            "diffusion": {"block_length": 8, "sampler": ["entropy"], "cache": ["none", "prefix"]},
            "timing": {"warmup": 1, "repeats": 2},
            "prompts": {"source": "file", "file": str(PROMPTS), "max_prompts": 2}}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(data))
    summary = run_experiment(load_experiment(tmp_path / "d.yaml"), progress=False)
    assert summary.ok == 3
    rows = list(csv.DictReader(open(summary.csv_path)))
    assert {r["family"] for r in rows} == {"qwen2", "dream"}
    # Dream's own schedule by default, recorded per row; AR rows carry none
    assert {(r["schedule"], r["eps"]) for r in rows if r["family"] == "dream"} == {("dream", "0.001")}
    assert {r["schedule"] for r in rows if r["family"] == "qwen2"} == {""}
    record = json.loads(next(p for p in (tmp_path / "raw" / "cells").glob("*.json")
                             if json.loads(p.read_text())["identity"]["family"] == "dream").read_text())
    mask = json.loads((tiny_models["dream"] / "config.json").read_text())["mask_token_id"]
    assert all(mask not in row for row in record["outputs"]["token_ids"])

"""Tiny random-init checkpoints of both families in the official on-disk layouts, fully offline.

- LLaMA-3 family: a transformers `LlamaForCausalLM` saved with `save_pretrained` (sharded
  safetensors + index, config.json, generation_config.json), as the official repository is laid out.
- LLaDA family: config.json with the official (OLMo-style) keys and safetensors shards with the
  official parameter names (`model.transformer.*`) plus `model.safetensors.index.json`.
- Qwen2.5 family (Dream's AR sibling) as transformers saves it, and Dream: Qwen2-style config keys
  and parameter names (`model.layers.{i}.self_attn.q_proj.bias`, ...) in sharded safetensors.
- A byte-level BPE tokenizer trained here on a local text file, with each family's special tokens.

Every config.json carries `dlm_bench_weights: synthetic-random-init`, so any result produced from
these checkpoints is labelled `weights=synthetic`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import dream
from .llada import LLaDAConfig, LLaDAModelLM
from .loader import SYNTHETIC_MARKER

MARKER_VALUE = "synthetic-random-init"
LLAMA_SPECIALS = {"bos": "<|begin_of_text|>", "eos": "<|end_of_text|>"}
LLADA_SPECIALS = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "mask": "<|mdm_mask|>"}
QWEN_SPECIALS = {"bos": "<|beginoftext|>", "eos": "<|endoftext|>", "mask": "<|mask|>"}


def train_tokenizer(corpus: list[str], specials: dict[str, str], vocab_size: int):
    """A byte-level BPE tokenizer (transformers fast tokenizer) trained on `corpus`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    kwargs = {f"{k}_token": v for k, v in specials.items() if k in ("bos", "eos")}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.pad_token = specials["eos"]
    if "mask" in specials:
        fast.mask_token = specials["mask"]
    return fast


def _round_up(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


@dataclass(frozen=True)
class HFLayout:
    """What differs between the transformers-saved AR layouts written here: special tokens, the transformers
    config and model classes (by name) and the family's published rope theta and norm epsilon."""

    specials: dict[str, str]
    config_class: str
    model_class: str
    rope_theta: float
    rms_norm_eps: float


LLAMA_LAYOUT = HFLayout(LLAMA_SPECIALS, "LlamaConfig", "LlamaForCausalLM", 500000.0, 1e-5)
QWEN2_LAYOUT = HFLayout({k: v for k, v in QWEN_SPECIALS.items() if k != "mask"}, "Qwen2Config", "Qwen2ForCausalLM",
                        1e6, 1e-6)


def _write_tiny_hf(out: Path, corpus: list[str], seed: int, layout: HFLayout, d_model: int, n_layers: int) -> Path:
    """A tiny transformers causal LM in `layout` (LLaMA-3 or Qwen2.5), saved as transformers does."""
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus, layout.specials, vocab_size=512)
    config_cls, model_cls = getattr(transformers, layout.config_class), getattr(transformers, layout.model_class)
    cfg = config_cls(hidden_size=d_model, intermediate_size=3 * d_model, num_hidden_layers=n_layers,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=_round_up(len(tok)),
                     max_position_embeddings=1024, rope_theta=layout.rope_theta,
                     rms_norm_eps=layout.rms_norm_eps, tie_word_embeddings=False,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    setattr(cfg, SYNTHETIC_MARKER, MARKER_VALUE)
    torch.manual_seed(seed)
    model = model_cls(cfg).to(torch.bfloat16)
    model.save_pretrained(str(out), max_shard_size="200KB")
    tok.save_pretrained(str(out))
    return out


def write_tiny_llama(out: Path, corpus: list[str], seed: int = 0, d_model: int = 64, n_layers: int = 2) -> Path:
    """A tiny LLaMA-3-architecture checkpoint (GQA, rope theta 5e5, untied head) + tokenizer."""
    return _write_tiny_hf(out, corpus, seed, LLAMA_LAYOUT, d_model, n_layers)


def write_tiny_qwen2(out: Path, corpus: list[str], seed: int = 0, d_model: int = 64, n_layers: int = 2) -> Path:
    """A tiny Qwen2.5-architecture checkpoint (q/k/v biases, GQA, rope theta 1e6): Dream's AR sibling."""
    return _write_tiny_hf(out, corpus, seed, QWEN2_LAYOUT, d_model, n_layers)


def _save_sharded(out: Path, state: dict) -> None:
    """Two safetensors shards plus model.safetensors.index.json, as the official repositories ship."""
    from safetensors.torch import save_file

    names = list(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(out / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in keys})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def write_tiny_dream(out: Path, corpus: list[str], seed: int = 0, d_model: int = 64, n_layers: int = 2) -> Path:
    """A tiny Dream (Qwen2.5-architecture diffusion LM) checkpoint in Dream's layout + tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus, QWEN_SPECIALS, vocab_size=512)
    vocab = _round_up(len(tok))
    cfg = LLaDAConfig(d_model=d_model, n_layers=n_layers, n_heads=4, n_kv_heads=2, mlp_hidden_size=3 * d_model,
                      vocab_size=vocab, embedding_size=vocab, max_sequence_length=1024, rope_theta=1e6,
                      rms_norm_eps=1e-6, mask_token_id=tok.convert_tokens_to_ids(QWEN_SPECIALS["mask"]),
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id, qkv_bias=True, shift_logits=True)
    model = LLaDAModelLM(cfg)
    model.init_random(generator=torch.Generator().manual_seed(seed))
    _save_sharded(out, {dream.native_to_official(k): v.to(torch.bfloat16).contiguous()
                        for k, v in model.state_dict().items()})
    config = dream.official_config(cfg)
    config[SYNTHETIC_MARKER] = MARKER_VALUE
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(dream.official_generation_config(cfg, tok.bos_token_id), indent=2))
    tok.save_pretrained(str(out))
    return out


def write_tiny_llada(out: Path, corpus: list[str], seed: int = 0, d_model: int = 64, n_layers: int = 2) -> Path:
    """A tiny LLaDA-architecture checkpoint in the official layout (no GQA, untied head) + tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus, LLADA_SPECIALS, vocab_size=512)
    vocab = _round_up(len(tok))
    cfg = LLaDAConfig(d_model=d_model, n_layers=n_layers, n_heads=4, n_kv_heads=4, mlp_hidden_size=3 * d_model,
                      vocab_size=vocab, embedding_size=vocab, max_sequence_length=1024,
                      mask_token_id=tok.convert_tokens_to_ids(LLADA_SPECIALS["mask"]),
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    model = LLaDAModelLM(cfg)
    model.init_random(generator=torch.Generator().manual_seed(seed))
    _save_sharded(out, {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()})
    config = cfg.to_official_dict()
    config[SYNTHETIC_MARKER] = MARKER_VALUE
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tok.save_pretrained(str(out))
    return out


def read_corpus(path: Path) -> list[str]:
    """Non-empty lines of a text file (JSONL lines contribute their 'prompt' and 'reference')."""
    lines = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            row = json.loads(line)
            line = " ".join(str(row[k]) for k in ("prompt", "reference") if row.get(k))
        lines.append(line)
    return lines


def write_tiny_models(out_dir: Path, corpus_file: Path, seed: int = 0) -> dict[str, Path]:
    """All tiny checkpoints under out_dir/{llama,llada,qwen2,dream}."""
    corpus = read_corpus(corpus_file)
    return {"llama": write_tiny_llama(out_dir / "llama", corpus, seed),
            "llada": write_tiny_llada(out_dir / "llada", corpus, seed + 1),
            "qwen2": write_tiny_qwen2(out_dir / "qwen2", corpus, seed + 2),
            "dream": write_tiny_dream(out_dir / "dream", corpus, seed + 3)}

"""Shape facts of a loaded model, recorded per row and used by the roofline formulas (counts in parameters)."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import family_of_model_type


@dataclass(frozen=True)
class Architecture:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    mlp_hidden: int
    vocab_size: int
    n_params: int
    n_params_non_embedding: int  # without the input embedding and the LM head

    @property
    def matmul_params(self) -> int:
        """Weights that multiply activations in the blocks: the non-embedding parameters without the RMSNorm
        weights (two per layer and the final one, all d_model wide). Q/K/V biases (Qwen2, Dream) stay in:
        an add, not a multiply-add, but under 0.01% of the count."""
        return self.n_params_non_embedding - (2 * self.n_layers + 1) * self.d_model

    @property
    def kv_per_token(self) -> int:
        """Elements of K and V of one token over every layer (times the precision's bytes per element)."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim


def architecture_of_config(cfg: dict) -> Architecture:
    """The shape facts of a config.json mapping, counted without building the model: the official LLaDA
    layout (OLMo names: d_model, n_layers, ...) or the transformers layout of LLaMA, Qwen2 and Dream
    (hidden_size, num_hidden_layers, ...). Parameters: per layer the q, k, v and output projections
    (with q/k/v biases for Qwen2 and Dream, or where the config says so), the SwiGLU MLP's three
    matrices and two RMSNorm weights; the final norm; the input embedding and, unless tied, the LM head."""
    if "d_model" in cfg:  # LLaDA's own names
        d, layers, heads = cfg["d_model"], cfg["n_layers"], cfg["n_heads"]
        kv, mlp = cfg.get("n_kv_heads") or heads, cfg["mlp_hidden_size"]
        vocab = cfg.get("embedding_size") or cfg["vocab_size"]
        tied, qkv_bias = bool(cfg.get("weight_tying")), bool(cfg.get("include_bias"))
        head_dim = d // heads
    else:
        d, layers, heads = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
        kv, mlp, vocab = cfg.get("num_key_value_heads") or heads, cfg["intermediate_size"], cfg["vocab_size"]
        tied = bool(cfg.get("tie_word_embeddings"))
        family = family_of_model_type(cfg.get("model_type"))
        qkv_bias = (family is not None and family.qkv_bias) or bool(cfg.get("attention_bias"))
        head_dim = cfg.get("head_dim") or d // heads
    attention = d * heads * head_dim + 2 * d * kv * head_dim + heads * head_dim * d
    if qkv_bias:
        attention += heads * head_dim + 2 * kv * head_dim
    per_layer = attention + 3 * d * mlp + 2 * d
    blocks = layers * per_layer + d
    embeddings = vocab * d * (1 if tied else 2)
    return Architecture(layers, d, heads, kv, head_dim, mlp, vocab, blocks + embeddings, blocks)

"""Shape facts of a loaded model, recorded per row and used by the roofline formulas (counts in parameters)."""

from __future__ import annotations

from dataclasses import dataclass


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

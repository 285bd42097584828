"""Generative perplexity: how likely a judge causal LM finds a continuation given its prompt.

Text is re-tokenised in the judge's tokenizer; only the continuation's tokens are scored.
"""

from __future__ import annotations

import math
from typing import Any

import torch


@torch.inference_mode()
def conditional_perplexity(model: Any, tokenizer: Any, prompt: str, continuation: str) -> float:
    """exp(mean NLL of the continuation tokens | prompt) under the judge; NaN for an empty continuation."""
    device = next(model.parameters()).device
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    cont_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not cont_ids:
        return math.nan
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = torch.tensor([bos + prompt_ids + cont_ids], device=device)
    max_len = getattr(model.config, "max_position_embeddings", None)
    if max_len and ids.shape[1] > max_len:
        ids = ids[:, -max_len:]
    logits = model(ids).logits[0, :-1].float()
    targets = ids[0, 1:]
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return float(torch.exp(nll[-len(cont_ids):].mean()))

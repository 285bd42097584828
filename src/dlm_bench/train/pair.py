"""A matched autoregressive / masked-diffusion pair: one LLaMA-style architecture, trained twice.

Both models are the project's native transformer (`models.llada.LLaDAModelLM`: RMSNorm, SwiGLU,
RoPE, no biases, untied head), created from the same seed and fed the same windows of the
training text in the same order:
- AR: causal attention, next-token cross-entropy; saved as a transformers `LlamaForCausalLM`
  (the parameter names map one to one; the heads are not grouped);
- MDM: bidirectional attention and LLaDA's objective: per sequence t ~ U(eps, 1], each token masked
  with probability t, cross-entropy on the masked positions weighted by 1/t and averaged over all
  positions; saved in the official LLaDA layout.
Masked diffusion needs more tokens than AR for similar quality, so it gets a larger budget. By
default it starts from its AR twin's trained weights (AR-to-diffusion adaptation, as Dream-7B from
Qwen2.5-7B): from random weights at this size and CPU budget the bidirectional model stays on the
unigram plateau (it predicts the most frequent token at every masked position for thousands of
steps), which `Budget(mdm_start="scratch")` reproduces.
Held-out figures are in bits per character: the AR model's NLL, and for the MDM the ELBO bound
E_t[(1/t) sum over masked positions of -log p] (an upper bound on its NLL), estimated with
stratified t. Both are measured on the weights as shipped (rounded to bf16).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..models import dream
from ..models.llada import LLaDAConfig, LLaDAModelLM

SPECIALS = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "mask": "<|mdm_mask|>"}
LN2 = math.log(2.0)


SMALL = LLaDAConfig(d_model=192, n_layers=4, n_heads=6, n_kv_heads=6, mlp_hidden_size=512, vocab_size=4096,
                    embedding_size=4096)  # 3.34 M parameters; the special-token ids come from the tokenizer


MDM_STARTS = ("ar", "scratch")


@dataclass(frozen=True)
class Budget:
    """Tokens each run trains on with its own objective (masked diffusion gets twice the AR budget),
    where the MDM starts (`ar`: the AR twin's weights as shipped; `scratch`: the shared random
    initialisation), the seed of the initial weights and of the data order, and the CPU threads."""

    ar_tokens: int = 2_400_000
    mdm_tokens: int = 4_800_000
    mdm_start: str = "ar"
    seed: int = 1234
    threads: int = 2

    def __post_init__(self) -> None:
        if self.mdm_start not in MDM_STARTS:
            raise ValueError(f"budget.mdm_start: {self.mdm_start!r} is not one of {', '.join(MDM_STARTS)}")


@dataclass(frozen=True)
class TrainSettings:
    """Windows of `context` tokens in batches of `batch`; AdamW (betas 0.9, 0.95) with linear warm-up and
    cosine decay to a tenth; LLaDA's minimum mask rate `mask_eps`; held-out evaluation over
    `eval_windows` windows with `elbo_samples` stratified t each; the architecture of both models."""

    context: int = 256
    batch: int = 16
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    budget: Budget = Budget()
    mask_eps: float = 1e-3
    eval_windows: int = 64
    elbo_samples: int = 8
    model: LLaDAConfig = SMALL

    def steps(self, kind: str) -> int:
        tokens = self.budget.ar_tokens if kind == "ar" else self.budget.mdm_tokens
        return max(1, tokens // (self.batch * self.context))


@dataclass
class TrainResult:
    """What one run did and reached; becomes the training card."""

    kind: str  # ar | mdm
    n_params: int
    tokens_seen: int
    steps: int
    wall_s: float
    final_train_loss: float
    heldout_bits_per_char: float
    heldout_metric: str
    curve: list[tuple[int, float]] = field(default_factory=list)  # (tokens seen, training loss)


def llada_config(s: TrainSettings, mask_id: int, eos_id: int) -> LLaDAConfig:
    """The settings' architecture with the tokenizer's special ids and room for twice the context."""
    return dataclasses.replace(s.model, max_sequence_length=2 * s.context, mask_token_id=mask_id, eos_token_id=eos_id,
                               pad_token_id=eos_id)


def initial_model(cfg: LLaDAConfig, seed: int) -> LLaDAModelLM:
    model = LLaDAModelLM(cfg)
    model.init_random(generator=torch.Generator().manual_seed(seed))
    return model


def weights_from_ar(folder: Path, cfg: LLaDAConfig) -> LLaDAModelLM:
    """A native model holding the AR checkpoint's weights (as saved, bf16) in fp32: the MDM's start."""
    from safetensors.torch import load_file

    model = LLaDAModelLM(cfg)
    state = {dream.official_to_native(k): v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
    model.load_state_dict(state, strict=True)
    return model


def windows(tokens: torch.Tensor, s: TrainSettings, steps: int) -> torch.Tensor:
    """The training windows [steps, batch, context + 1], drawn with the data seed: the same for both runs."""
    g = torch.Generator().manual_seed(s.budget.seed)
    starts = torch.randint(0, len(tokens) - s.context - 1, (steps, s.batch), generator=g)
    return torch.stack([torch.stack([tokens[i:i + s.context + 1] for i in row]) for row in starts])


def ar_loss(model: LLaDAModelLM, window: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) of a batch of windows [B, L + 1]."""
    logits = model(window[:, :-1], causal=True).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), window[:, 1:].flatten())


def mdm_loss(model: LLaDAModelLM, ids: torch.Tensor, mask_id: int, eps: float, g: torch.Generator,
             t: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LLaDA's objective on ids [B, L]: sum over masked positions of CE / t, divided by B * L (nats/token)."""
    batch, length = ids.shape
    if t is None:
        t = (1 - eps) * torch.rand(batch, generator=g) + eps
    masked = torch.rand(batch, length, generator=g) < t[:, None]
    logits = model(torch.where(masked, torch.full_like(ids, mask_id), ids)).logits
    ce = F.cross_entropy(logits[masked].float(), ids[masked], reduction="none")
    return (ce / t[:, None].expand_as(masked)[masked]).sum() / (batch * length)


def _lr(step: int, total: int, s: TrainSettings) -> float:
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = (step - s.warmup_steps) / max(1, total - s.warmup_steps)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(kind: str, model: LLaDAModelLM, tokens: torch.Tensor, s: TrainSettings, mask_id: int,
          progress: bool = True, log_every: int = 10) -> TrainResult:
    """Train in place for the kind's token budget; returns the run's facts (held-out figures unset)."""
    torch.manual_seed(s.budget.seed)
    steps = s.steps(kind)
    data = windows(tokens, s, steps)
    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    other = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=s.lr, betas=(0.9, 0.95))
    noise = torch.Generator().manual_seed(s.budget.seed + 1)
    model.train()
    started, curve, running = time.perf_counter(), [], []
    bar = tqdm(range(steps), desc=f"train {kind}", unit="step", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, s)
        window = data[step]
        loss = ar_loss(model, window) if kind == "ar" else mdm_loss(model, window[:, :-1], mask_id, s.mask_eps, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step == steps - 1:
            curve.append(((step + 1) * s.batch * s.context, sum(running) / len(running)))
            bar.set_postfix(loss=f"{curve[-1][1]:.3f}")  # a masked model stuck near the unigram loss shows here
            running = []
    model.eval()
    return TrainResult(kind, sum(p.numel() for p in model.parameters()), steps * s.batch * s.context, steps,
                       time.perf_counter() - started, curve[-1][1], math.nan, "", curve)


def heldout_chunks(tokens: torch.Tensor, s: TrainSettings) -> torch.Tensor:
    """Evenly spaced held-out windows [eval_windows, context + 1]."""
    stride = max(1, (len(tokens) - s.context - 1) // s.eval_windows)
    return torch.stack([tokens[i:i + s.context + 1] for i in range(0, stride * s.eval_windows, stride)])


@torch.inference_mode()
def heldout_bits_per_char(kind: str, model: LLaDAModelLM, chunks: torch.Tensor, chars: Callable[[list[int]], int],
                          s: TrainSettings, mask_id: int) -> float:
    """AR: NLL of the targets; MDM: the ELBO bound, with `elbo_samples` stratified t per window.
    Both in bits per character of the scored text."""
    total_nats, total_chars = 0.0, 0
    g = torch.Generator().manual_seed(s.budget.seed + 2)
    for chunk in chunks:
        if kind == "ar":
            logits = model(chunk[None, :-1], causal=True).logits[0].float()
            total_nats += float(F.cross_entropy(logits, chunk[1:], reduction="sum"))
            total_chars += chars(chunk[1:].tolist())
            continue
        ids = chunk[None, :-1]
        strata = (torch.arange(s.elbo_samples) + torch.rand(s.elbo_samples, generator=g)) / s.elbo_samples
        ts = (1 - s.mask_eps) * strata + s.mask_eps
        bound = sum(float(mdm_loss(model, ids, mask_id, s.mask_eps, g, t=t[None])) for t in ts) / len(ts)
        total_nats += bound * ids.shape[1]
        total_chars += chars(ids[0].tolist())
    return total_nats / LN2 / total_chars


def as_shipped(model: LLaDAModelLM) -> LLaDAModelLM:
    """The weights rounded to bf16 (as saved), back in fp32 for evaluation."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def save_mdm(model: LLaDAModelLM, tokenizer, out: Path, card: dict) -> Path:
    """Official LLaDA layout: config.json (OLMo-style keys), model.safetensors (bf16), tokenizer, card."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(model.config.to_official_dict(), indent=2))
    tokenizer.save_pretrained(str(out))
    return out


def to_llama(model: LLaDAModelLM, bos_id: int):
    """The causal twin as a transformers LlamaForCausalLM with the same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    cfg = LlamaConfig(hidden_size=c.d_model, intermediate_size=c.mlp_hidden_size, num_hidden_layers=c.n_layers,
                      num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, vocab_size=c.vocab_size,
                      max_position_embeddings=c.max_sequence_length, rope_theta=c.rope_theta,
                      rms_norm_eps=c.rms_norm_eps, tie_word_embeddings=False, bos_token_id=bos_id,
                      eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id)
    llama = LlamaForCausalLM(cfg)
    llama.load_state_dict({dream.native_to_official(k): v for k, v in model.state_dict().items()}, strict=True)
    return llama.eval()


def save_ar(model: LLaDAModelLM, tokenizer, out: Path) -> Path:
    """transformers layout (save_pretrained, bf16 safetensors) plus the tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    to_llama(model, tokenizer.bos_token_id).to(torch.bfloat16).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def card(result: TrainResult, s: TrainSettings, hardware: str, corpus: dict) -> dict:
    """The training card: settings, budget, wall time, hardware, held-out figure, curve."""
    arch = {k: getattr(s.model, k) for k in ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "vocab_size")}
    from_ar = result.kind == "mdm" and s.budget.mdm_start == "ar"
    before = s.steps("ar") * s.batch * s.context if from_ar else 0
    return {"kind": result.kind, "architecture": {**arch, "context": s.context},
            "start": "the AR twin's trained weights" if from_ar else f"random (seed {s.budget.seed})",
            "n_params": result.n_params, "tokens_seen": result.tokens_seen,
            "tokens_seen_with_start": before + result.tokens_seen, "steps": result.steps,
            "wall_s": round(result.wall_s, 1), "hardware": hardware, "settings": asdict(s),
            "final_train_loss_nats": result.final_train_loss, "heldout_metric": result.heldout_metric,
            "heldout_bits_per_char": result.heldout_bits_per_char, "corpus": corpus, "curve": result.curve}


def card_markdown(c: dict) -> str:
    what = {"ar": "autoregressive (causal), saved as LlamaForCausalLM",
            "mdm": "masked diffusion (bidirectional, LLaDA objective), saved in the LLaDA layout"}[c["kind"]]
    a = c["architecture"]
    return "\n".join([
        f"# Training card: {c['kind']}", "", f"- model: {what}",
        f"- architecture: d_model {a['d_model']}, {a['n_layers']} layers, {a['n_heads']} heads, MLP {a['mlp_hidden_size']}, "
        f"vocabulary {a['vocab_size']} (BPE trained on the five training novels), context {a['context']}",
        f"- parameters: {c['n_params']:,}", f"- start: {c['start']}",
        f"- tokens seen with this objective: {c['tokens_seen']:,} in {c['steps']:,} steps"
        + (f" ({c['tokens_seen_with_start']:,} counting the AR training it starts from)"
           if c["tokens_seen_with_start"] != c["tokens_seen"] else ""),
        f"- wall time: {c['wall_s']:.0f} s on {c['hardware']}",
        f"- final training loss: {c['final_train_loss_nats']:.3f} nats/token"
        + (" (the 1/t-weighted masked loss)" if c["kind"] == "mdm" else ""),
        f"- held-out ({c['corpus'].get('held_out', 'persuasion')}): {c['heldout_bits_per_char']:.3f} bits per character, "
        f"{c['heldout_metric']}", f"- seed {c['settings']['budget']['seed']}; data: {c['corpus'].get('package', '')}", ""])

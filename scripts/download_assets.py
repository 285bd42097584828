"""Fill the local Hugging Face cache with what a config needs (run on a login node with internet).

    python scripts/download_assets.py --config config/experiments.yaml --model-cache-dir $HF_HOME/hub \\
        --dataset-cache-dir $HF_HOME/datasets [--hf-token ... | env HF_TOKEN] [--extra-model-id org/name]
    python scripts/download_assets.py --config config/experiments.yaml --local-files-only   # check only

Downloads the config's hub models (weights as safetensors, configs, tokenizers), the perplexity
judge, the BERTScore encoder and the Wikitext-103 validation split when the prompts need it. With
--local-files-only nothing is downloaded: the cache is checked and every missing item is listed
(exit code 1 when anything is missing). The token is never printed or written anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from src.config import ConfigError, Experiment, load_experiment  # noqa: E402

MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model", "*.tiktoken"]
BERTSCORE_HUB_IDS = {"roberta-large": "FacebookAI/roberta-large", "bert-base-uncased": "google-bert/bert-base-uncased",
                     "microsoft/deberta-xlarge-mnli": "microsoft/deberta-xlarge-mnli"}


@dataclass(frozen=True)
class Asset:
    kind: str  # model | dataset
    repo_id: str
    what: str  # why the config needs it


def assets_for(exp: Experiment, extra_models: list[str]) -> list[Asset]:
    out = [Asset("model", m.hub_id, f"model {m.name}") for m in exp.models if m.hub_id]
    q = exp.quality
    if q.judge_hub_id:
        out.append(Asset("model", q.judge_hub_id, "perplexity judge"))
    local = q.bertscore_model.startswith("package:") or exp.resolve(q.bertscore_model).exists()
    if not local:
        out.append(Asset("model", BERTSCORE_HUB_IDS.get(q.bertscore_model, q.bertscore_model), "BERTScore encoder"))
    out += [Asset("model", m, "--extra-model-id") for m in extra_models]
    if exp.prompts.source == "wikitext":
        out.append(Asset("dataset", "Salesforce/wikitext", "prompts (wikitext-103-raw-v1, validation)"))
    seen, unique = set(), []
    for a in out:
        if (a.kind, a.repo_id) not in seen:
            seen.add((a.kind, a.repo_id))
            unique.append(a)
    return unique


def _redact(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text


def fetch(asset: Asset, token: Optional[str], model_cache: Optional[str], dataset_cache: Optional[str],
          local_only: bool) -> Optional[str]:
    """Download (or, local_only, look up) one asset; returns an error line or None."""
    try:
        if asset.kind == "model":
            from huggingface_hub import snapshot_download

            snapshot_download(asset.repo_id, cache_dir=model_cache, token=token, local_files_only=local_only,
                              allow_patterns=MODEL_FILES)
        else:
            if local_only:
                os.environ["HF_DATASETS_OFFLINE"] = "1"
            from datasets import load_dataset

            load_dataset(asset.repo_id, "wikitext-103-raw-v1", split="validation", cache_dir=dataset_cache,
                         token=token)
    except Exception as exc:  # every hub/dataset failure becomes one line
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--hf-token", help="Hugging Face token (default: $HF_TOKEN); never printed")
    p.add_argument("--model-cache-dir", help="hub cache for models (default: HF_HUB_CACHE / HF_HOME)")
    p.add_argument("--dataset-cache-dir", help="cache for datasets (default: HF_DATASETS_CACHE / HF_HOME)")
    p.add_argument("--extra-model-id", action="append", default=[], help="another hub model to fetch (repeatable)")
    p.add_argument("--local-files-only", action="store_true", help="check the cache, download nothing")
    args = p.parse_args()
    token = args.hf_token or os.environ.get("HF_TOKEN")
    try:
        exp = load_experiment(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    assets = assets_for(exp, args.extra_model_id)
    verb = "checking" if args.local_files_only else "downloading"
    missing = []
    for asset in assets:
        print(f"{verb} {asset.kind} {asset.repo_id} ({asset.what}) ...", flush=True)
        error = fetch(asset, token, args.model_cache_dir, args.dataset_cache_dir, args.local_files_only)
        if error:
            missing.append(asset)
            print(f"  MISSING: {_redact(error, token)[:300]}", flush=True)
        else:
            print("  ok", flush=True)
    if missing:
        print(f"{len(missing)} of {len(assets)} asset(s) missing: " + ", ".join(a.repo_id for a in missing))
        return 1
    print(f"all {len(assets)} asset(s) present")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import dataclasses
import os
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent

from dlm_bench.assets import assets_for, fetch
from dlm_bench.config import ConfigError, load_experiment

def _redact(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text


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
    # everything the run and a later `score` pass read (`score` always computes BERTScore)
    scored = dataclasses.replace(exp, quality=dataclasses.replace(exp.quality, compute_bertscore=True))
    assets = assets_for(scored, args.extra_model_id, scoring=True)
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

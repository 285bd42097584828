"""What a run needs from the Hugging Face caches, and whether it is there.

A run never downloads: `main` sets the hub's offline flags and, before any model loads, lists every
missing asset in one message with the command that fetches it (`scripts/download_assets.py`, run where
there is internet, downloads them into the same caches).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional

from .config import Experiment
from .registry import TASKS

MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model", "*.tiktoken"]
BERTSCORE_HUB_IDS = {"roberta-large": "FacebookAI/roberta-large", "bert-base-uncased": "google-bert/bert-base-uncased",
                     "microsoft/deberta-xlarge-mnli": "microsoft/deberta-xlarge-mnli"}
WIKITEXT = ("Salesforce/wikitext", "wikitext-103-raw-v1", "validation")


@dataclass(frozen=True)
class Asset:
    kind: str  # model | dataset
    repo_id: str
    what: str  # why the config needs it
    config: Optional[str] = None  # dataset: its configuration
    splits: tuple[str, ...] = ()  # dataset: the splits read


def assets_for(exp: Experiment, extra_models: Iterable[str] = (), scoring: bool = True) -> list[Asset]:
    """The hub models and datasets a config needs (the scoring ones only when `scoring`)."""
    out = [Asset("model", m.hub_id, f"model {m.name}") for m in exp.models if m.hub_id]
    q = exp.quality
    if scoring and q.judge_hub_id:
        out.append(Asset("model", q.judge_hub_id, "perplexity judge"))
    if scoring and q.compute_bertscore and not q.bertscore_is_local(exp.base_dir):
        out.append(Asset("model", BERTSCORE_HUB_IDS.get(q.bertscore_model, q.bertscore_model), "BERTScore encoder"))
    out += [Asset("model", m, "--extra-model-id") for m in extra_models]
    if exp.prompts.source == "wikitext":
        out.append(Asset("dataset", WIKITEXT[0], f"prompts ({WIKITEXT[1]}, {WIKITEXT[2]})", WIKITEXT[1],
                         (WIKITEXT[2],)))
    for task in exp.tasks:
        dataset = TASKS[task.name].dataset
        splits = (() if task.file else ("test",)) + (("train",) if task.n_shot and not task.shots_file else ())
        if dataset and splits:
            out.append(Asset("dataset", dataset[0], f"task {task.name} ({dataset[1]}, {', '.join(splits)})",
                             dataset[1], splits))
    unique: dict[tuple[str, str], Asset] = {}
    for a in out:
        unique.setdefault((a.kind, a.repo_id), a)
    return list(unique.values())


def fetch(asset: Asset, token: Optional[str] = None, model_cache: Optional[str] = None,
          dataset_cache: Optional[str] = None, local_only: bool = True) -> Optional[str]:
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

            for split in asset.splits:
                load_dataset(asset.repo_id, asset.config, split=split, cache_dir=dataset_cache, token=token)
    except Exception as exc:  # every hub/dataset failure becomes one line
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def missing_assets(exp: Experiment, scoring: bool, config_path: str) -> Optional[str]:
    """One line naming every asset missing from the local caches and how to fetch them, or None."""
    missing = [a for a in assets_for(exp, scoring=scoring)
               if fetch(a, dataset_cache=exp.prompts.dataset_cache_dir, local_only=True)]
    if not missing:
        return None
    names = "; ".join(f"{a.kind} {a.repo_id} ({a.what})" for a in missing)
    return (f"not in the local caches (HF_HOME): {names}. Nothing is downloaded at run time; fetch them with: "
            f"python scripts/download_assets.py --config {config_path}")

"""The scoring pass over saved generations: BERTScore, generative perplexity, diversity; then
quality_metrics.json and each cell record's quality part (its quality columns in the rows).

Runs after a timing sweep (same process with --compute_bertscore, or later with `score`), never
inside a timed region. S_parity and the Speedup Factor are computed by the analysis from the rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

from ..config import Experiment, resolve_asset
from ..fileio import atomic_write_text, jsonable
from ..results import QualityResult, ResultStore
from .bertscore import BertScore, BertScoreSettings
from .diversity import distinct_n, is_degenerate, unigram_entropy_bits
from ..metrics.quality import QUALITY_METRICS
from .perplexity import conditional_perplexity
from ..stats import Estimate, bootstrap_mean

log = logging.getLogger(__name__)

SMOKE_LABEL = "smoke-test quality (synthetic weights): not model quality"
MODEL_LABEL = "model quality"


@dataclass
class Judge:
    name: str
    model: Any
    tokenizer: Any


def load_judge(exp: Experiment, device: torch.device) -> Optional[Judge]:
    """The perplexity judge from quality.judge_path / judge_hub_id (local files only), or None."""
    q = exp.quality
    if not (q.judge_path or q.judge_hub_id):
        return None
    if q.judge_path:
        return load_judge_from(q.judge_path, resolve_asset(q.judge_path, exp.base_dir), device)
    from huggingface_hub import snapshot_download

    return load_judge_from(q.judge_hub_id, Path(snapshot_download(q.judge_hub_id, local_files_only=True)), device)


def load_judge_from(name: str, where: Path, device: torch.device) -> Judge:
    """A judge from a checkpoint folder or a GGUF file (dequantised by transformers via `gguf`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    files = {"gguf_file": where.name} if where.suffix == ".gguf" else {}
    folder = str(where.parent if files else where)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **files).to(device).eval()
    return Judge(name, model, AutoTokenizer.from_pretrained(folder, **files))


def score_generations(generations: list[dict], bert: Optional[BertScore], judge: Optional[Judge],
                      ppl_cache: dict) -> list[dict]:
    """Per-prompt scores of one cell's generations."""
    rows = []
    bert_scores = bert.score([g["output_text"] for g in generations], [g["reference_text"] for g in generations]) \
        if bert else [None] * len(generations)
    for g, bs in zip(generations, bert_scores):
        words = g["output_text"].split()
        row = {"passage_id": g["passage_id"], "unigram_entropy_bits": unigram_entropy_bits(words),
               "distinct_1": distinct_n(words, 1), "distinct_2": distinct_n(words, 2),
               "degenerate": float(is_degenerate(words))}
        if bs is not None:
            row["bertscore_precision"], row["bertscore_recall"], row["bertscore_f1"] = bs
        if judge is not None:  # a text scored once per run: cells often share continuations (e.g. AR decode paths)
            for column, continuation in (("gen_ppl", g["output_text"]), ("ref_ppl", g["reference_text"])):
                key = (g["prompt_text"], continuation)
                if key not in ppl_cache:
                    ppl_cache[key] = conditional_perplexity(judge.model, judge.tokenizer, *key)
                row[column] = ppl_cache[key]
        rows.append(row)
    return rows


def aggregate(per_prompt: list[dict], resamples: int) -> dict[str, Estimate]:
    """Per metric (see metrics.quality), the mean over prompts with a bootstrap 95% interval."""
    present = [m for m in QUALITY_METRICS if per_prompt and m in per_prompt[0]]
    return {m: bootstrap_mean([r[m] for r in per_prompt], resamples) for m in present}


def score_experiment(exp: Experiment, device: torch.device, progress: bool = True) -> dict[str, Path]:
    """Score every finished cell that has saved generations and no scores from the same encoder and judge
    (a re-run resumes); write the quality files."""
    q = exp.quality
    store = ResultStore(exp.results_dir)
    records = [r for r in store.records() if r.status == "ok" and r.generations]
    bert = None
    if q.compute_bertscore:
        bert = BertScore(BertScoreSettings(q.bertscore_model, q.bertscore_num_layers, q.bertscore_rescale,
                                           str(exp.resolve(q.bertscore_baseline_path)) if q.bertscore_baseline_path
                                           else None, q.bertscore_batch_size), str(device))
    judge = load_judge(exp, device)
    quality_path = store.root / "quality_metrics.json"
    quality = json.loads(quality_path.read_text()) if quality_path.exists() else {}
    ppl_cache: dict = {}
    def judge_of(rec) -> Optional[Judge]:
        """The judge, for the cells whose N it reads (quality.judge_max_seq_len)."""
        too_long = q.judge_max_seq_len is not None and rec.identity["seq_len"] > q.judge_max_seq_len
        return None if too_long else judge

    def scorers(rec) -> tuple:
        """(encoder, judge) names a cell is scored by."""
        reader = judge_of(rec)
        return bert.label if bert else None, reader.name if reader else None

    done = {r.cell_id for r in records if r.quality is not None and r.cell_id in quality
            and (r.quality.bertscore_model, r.quality.judge) == scorers(r)}
    if done:
        log.info("%d cells already scored by the same encoder and judge; skipped", len(done))
    for rec in tqdm([r for r in records if r.cell_id not in done], desc="scoring", unit="cell",
                    disable=not progress):
        per_prompt = score_generations(rec.generations, bert, judge_of(rec), ppl_cache)
        estimates = aggregate(per_prompt, q.bootstrap_resamples)
        label = SMOKE_LABEL if rec.weights == "synthetic" else MODEL_LABEL
        rec.quality = QualityResult(label, len(per_prompt), *scorers(rec), estimates)
        quality[rec.cell_id] = {
            **{k: rec.identity[k] for k in ("model_name", "kind", "seq_len", "batch_size", "steps", "sampler",
                                            "cache", "decode")},
            "weights": rec.weights, "quality_label": label, "bertscore_model": rec.quality.bertscore_model,
            "judge": rec.quality.judge, "per_prompt": per_prompt,
            "aggregates": {m: {"mean": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high} for m, e in estimates.items()}}
        store.write(rec)
        atomic_write_text(quality_path, json.dumps(jsonable(quality), indent=1))  # each cell kept: a re-run resumes
    if not quality_path.exists():  # nothing to score: an empty table
        atomic_write_text(quality_path, json.dumps(quality))
    csv_path = store.merge()
    log.info("scored %d cells: %s", len(records), quality_path)
    return {"quality": quality_path, "csv": csv_path}

"""The scoring pass over saved generations: BERTScore, generative perplexity, diversity; then
quality_metrics.json and each cell record's quality part (its quality columns in the rows).

Runs after a timing sweep (same process with --compute_bertscore, or later with `score`), never
inside a timed region. S_parity and the Speedup Factor are computed by the analysis from the rows.
"""

from __future__ import annotations

import json
import logging
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

from ..config import Experiment, resolve_asset
from ..fileio import atomic_write_bytes, atomic_write_text, jsonable
from ..results import QUALITY_FILE, QualityResult, ResultStore, read_quality
from .bertscore import BertScore, BertScoreSettings, settings_label
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


def judge_name(exp: Experiment) -> Optional[str]:
    """The name a cell's quality records for the configured judge (its path or hub id), None without one."""
    return exp.quality.judge_path or exp.quality.judge_hub_id


@dataclass
class Scorers:
    """The scoring models of a run, loaded on first use: a run whose cells are all scored loads none."""

    exp: Experiment
    device: torch.device
    _bert: Optional[BertScore] = None
    _judge: Optional[Judge] = None

    @property
    def bert_settings(self) -> Optional[BertScoreSettings]:
        q = self.exp.quality
        if not q.compute_bertscore:
            return None
        return BertScoreSettings(q.bertscore_model, q.bertscore_num_layers, q.bertscore_rescale,
                                 str(self.exp.resolve(q.bertscore_baseline_path)) if q.bertscore_baseline_path else None,
                                 q.bertscore_batch_size)

    def bert(self) -> Optional[BertScore]:
        settings = self.bert_settings
        if settings is not None and self._bert is None:
            self._bert = BertScore(settings, str(self.device))
        return self._bert

    def judge(self) -> Optional[Judge]:
        if self._judge is None and judge_name(self.exp):
            self._judge = load_judge(self.exp, self.device)
        return self._judge

    def names(self, identity: dict) -> tuple[Optional[str], Optional[str]]:
        """(encoder, judge) labels a cell is scored by; the judge only reads cells up to quality.judge_max_seq_len."""
        settings, q = self.bert_settings, self.exp.quality
        too_long = q.judge_max_seq_len is not None and identity["seq_len"] > q.judge_max_seq_len
        return settings_label(settings) if settings else None, None if too_long else judge_name(self.exp)


@dataclass
class ScoreSummary:
    scored: int = 0
    already: int = 0  # scored before by the same encoder and judge
    busy: int = 0  # another run was scoring them


JUDGE_CACHE = "judge_cache.jsonl.xz"  # in a results folder: texts a judge has scored, with their perplexity (working file)


def read_judge_cache(root: Path, judge: Optional[str]) -> dict:
    """The judge's earlier scores in a results folder: {(prompt text, continuation): perplexity}."""
    path = root / JUDGE_CACHE
    if judge is None or not path.is_file():
        return {}
    try:
        lines = lzma.decompress(path.read_bytes()).decode("utf-8").splitlines()
        entries = [json.loads(line) for line in lines]
    except (lzma.LZMAError, ValueError):
        log.warning("%s is damaged; it is rebuilt as texts are scored", path)
        return {}
    return {(e["prompt"], e["text"]): e["ppl"] for e in entries if e.get("judge") == judge}


def write_judge_cache(root: Path, judge: str, scores: dict) -> None:
    """Add a judge's scores to the folder's cache (other judges' entries are kept)."""
    path = root / JUDGE_CACHE
    kept = []
    if path.is_file():
        try:
            kept = [json.loads(line) for line in lzma.decompress(path.read_bytes()).decode("utf-8").splitlines()]
        except (lzma.LZMAError, ValueError):
            kept = []
    entries = {(e["judge"], e["prompt"], e["text"]): e["ppl"] for e in kept}
    entries.update({(judge, prompt, text): ppl for (prompt, text), ppl in scores.items()})
    text = "".join(json.dumps({"judge": j, "prompt": p, "text": t, "ppl": v}) + "\n"
                   for (j, p, t), v in sorted(entries.items()))
    atomic_write_bytes(path, lzma.compress(text.encode("utf-8")))


def keep_judge_scores(exp: Experiment) -> int:
    """Put every text the folder's cells were judged on (their generations, and quality_metrics.json's per-prompt
    scores by the configured judge) into the judge cache, so measuring the cells again keeps the scores of texts
    that come out the same. Returns the number of texts kept."""
    judge = judge_name(exp)
    store = ResultStore(exp.results_dir)
    quality = read_quality(store.root / QUALITY_FILE)
    scores = {}
    for rec in store.records():
        entry = quality.get(rec.cell_id)
        if not rec.generations or not entry or entry.get("judge") != judge:
            continue
        by_passage = {row["passage_id"]: row for row in entry.get("per_prompt", [])}
        for g in rec.generations:
            row = by_passage.get(g["passage_id"], {})
            for column, text in (("gen_ppl", g["output_text"]), ("ref_ppl", g["reference_text"])):
                if row.get(column) is not None:
                    scores[(g["prompt_text"], text)] = row[column]
    if judge is not None and scores:
        write_judge_cache(store.root, judge, scores)
    log.info("judge cache: %d texts kept for %s", len(scores), judge)
    return len(scores)


def score_experiment(exp: Experiment, device: torch.device, progress: bool = True) -> ScoreSummary:
    """Score every finished cell that has saved generations and no scores from the same encoder and judge (a
    re-run resumes; the scoring models load only when some cell needs them); write the quality files. Each cell is
    claimed while it is scored (`ResultStore.claim`), so concurrent runs on one folder score each cell once, and
    quality_metrics.json is updated under a lock."""
    store = ResultStore(exp.results_dir)
    scorers = Scorers(exp, device)
    quality_path = store.root / QUALITY_FILE

    def scored(rec) -> bool:
        return (rec.quality is not None and (rec.quality.bertscore_model, rec.quality.judge) == scorers.names(rec.identity)
                and rec.cell_id in read_quality(quality_path))

    records = [r for r in store.records() if r.status == "ok" and r.generations]
    todo = [r for r in records if not scored(r)]
    summary = ScoreSummary(already=len(records) - len(todo))
    if summary.already:
        log.info("%d cells already scored by the same encoder and judge; skipped", summary.already)
    ppl_cache: dict = read_judge_cache(store.root, judge_name(exp))  # texts judged before are not judged again
    known = len(ppl_cache)
    for rec in tqdm(todo, desc="scoring", unit="cell", disable=not progress):
        with store.claim(f"score-{rec.cell_id}") as mine:
            fresh = store.read(rec.cell_id) if mine else None
            if fresh is None or scored(fresh):  # another run is scoring it, or scored it meanwhile
                summary.busy += not mine
                summary.already += mine
                continue
            encoder, judge = scorers.names(fresh.identity)
            per_prompt = score_generations(fresh.generations, scorers.bert(), scorers.judge() if judge else None,
                                           ppl_cache)
            estimates = aggregate(per_prompt, exp.quality.bootstrap_resamples)
            label = SMOKE_LABEL if fresh.weights == "synthetic" else MODEL_LABEL
            fresh.quality = QualityResult(label, len(per_prompt), encoder, judge, estimates)
            entry = {**{k: fresh.identity[k] for k in ("model_name", "kind", "seq_len", "batch_size", "steps",
                                                       "sampler", "cache", "decode")},
                     "weights": fresh.weights, "quality_label": label, "bertscore_model": encoder, "judge": judge,
                     "per_prompt": per_prompt,
                     "aggregates": {m: {"mean": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
                                    for m, e in estimates.items()}}
            with store.file_lock(quality_path.name):  # each cell kept at once: a re-run resumes
                quality = read_quality(quality_path)
                quality[fresh.cell_id] = entry
                atomic_write_text(quality_path, json.dumps(jsonable(quality), indent=1))
            store.write(fresh)
            summary.scored += 1
    if not quality_path.exists():  # nothing to score: an empty table
        atomic_write_text(quality_path, json.dumps({}))
    if len(ppl_cache) > known:
        with store.file_lock(JUDGE_CACHE):
            write_judge_cache(store.root, str(judge_name(exp)), ppl_cache)
    store.merge()
    log.info("scored %d cells (%d scored before, %d left to another run): %s", summary.scored, summary.already,
             summary.busy, quality_path)
    return summary

"""Prompts and reference continuations, identical for every model of a run.

For sequence length N a passage qualifies when it has at least N tokens in *every* model's
tokenizer; its prompt is the first N/2 tokens and its reference the next N/2 (in each model's own
tokenizer). Prompts are cut to exactly P tokens, so a measured batch has no padding.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..config import ModelSpec, PromptSpec, resolve_path

log = logging.getLogger(__name__)


class PromptSourceError(RuntimeError):
    """The prompt source cannot give what the grid needs."""


@dataclass(frozen=True)
class Passage:
    """A text from the prompt source. `reference` is set when the source gives it separately."""

    passage_id: str
    text: str
    reference: Optional[str] = None


@dataclass
class PromptSet:
    """Prompts (each exactly `prompt_len` token ids) and references (`n_out` ids) for one model."""

    passage_ids: list[str]
    prompt_ids: list[list[int]]
    reference_ids: list[list[int]]
    source: str

    def batch(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, list[str]]:
        """[B, P] prompt ids (cycling through the set when B exceeds it) and their passage ids."""
        idx = [i % len(self.prompt_ids) for i in range(batch_size)]
        ids = torch.tensor([self.prompt_ids[i] for i in idx], dtype=torch.long, device=device)
        return ids, [self.passage_ids[i] for i in idx]


def read_prompt_file(path: Path) -> list[Passage]:
    """One passage per line, or JSONL lines with `prompt` and optional `reference` (and `id`)."""
    passages = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PromptSourceError(f"{path}: not UTF-8 text (byte {exc.start}); allowed: a UTF-8 text or JSONL file") from None
    for n, line in enumerate(text.splitlines()):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptSourceError(f"{path}:{n + 1}: not valid JSON ({exc})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise PromptSourceError(f"{path}:{n + 1}: JSONL line without a string 'prompt' field")
            if not isinstance(row.get("reference", ""), (str, type(None))):
                raise PromptSourceError(f"{path}:{n + 1}: 'reference' is not a string; allowed: a string or absent")
            passages.append(Passage(str(row.get("id", f"line{n + 1}")), row["prompt"], row.get("reference")))
        else:
            passages.append(Passage(f"line{n + 1}", line))
    return passages


def read_wikitext(cache_dir: Optional[str], split: str = "validation") -> list[Passage]:
    """Wikitext-103 (raw) articles via `datasets`; honours HF_DATASETS_OFFLINE and the cache dir."""
    from datasets import load_dataset

    try:
        rows = load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1", split=split, cache_dir=cache_dir)
    except Exception as exc:  # datasets raises several types when offline or missing
        raise PromptSourceError(f"prompts.source wikitext: cannot load Salesforce/wikitext "
                                f"(wikitext-103-raw-v1, {split}) from the cache: {exc}. Download it with "
                                f"scripts/download_assets.py or use --prompt_file") from None
    return articles_from_lines(rows["text"], f"wikitext103:{split}")


def articles_from_lines(lines: Sequence[str], prefix: str) -> list[Passage]:
    """Join Wikitext lines into one passage per article (`= Title =` starts an article; `= = Sub = =`
    headings and blank lines are dropped)."""
    articles: list[Passage] = []
    title, body = None, []
    for text in lines:
        stripped = text.strip()
        if stripped.startswith("= ") and not stripped.startswith("= = ") and stripped.endswith(" ="):
            if title is not None and body:
                articles.append(Passage(f"{prefix}:{len(articles)}", " ".join(body)))
            title, body = stripped.strip("= ").strip(), []
        elif stripped and not stripped.startswith("= = "):
            body.append(stripped)
    if title is not None and body:
        articles.append(Passage(f"{prefix}:{len(articles)}", " ".join(body)))
    return articles


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _split(passage: Passage, tokenizer: Any, prompt_len: int, n_out: int) -> Optional[tuple[list[int], list[int]]]:
    """(prompt ids, reference ids) of exact lengths, or None when the passage is too short."""
    if passage.reference is None:
        ids = _encode(tokenizer, passage.text)
        if len(ids) < prompt_len + n_out:
            return None
        return ids[:prompt_len], ids[prompt_len:prompt_len + n_out]
    prompt, reference = _encode(tokenizer, passage.text), _encode(tokenizer, passage.reference)
    if len(prompt) < prompt_len or len(reference) < n_out:
        return None
    return prompt[-prompt_len:], reference[:n_out]


def build_prompt_sets(passages: Sequence[Passage], tokenizers: dict[str, Any], seq_len: int,
                      max_prompts: int, source: str) -> dict[str, PromptSet]:
    """Per model name, a PromptSet over the same passages: the first `max_prompts` that are long
    enough in every tokenizer. Raises PromptSourceError when fewer than `max_prompts` qualify."""
    prompt_len, n_out = seq_len // 2, seq_len - seq_len // 2
    chosen: dict[str, PromptSet] = {name: PromptSet([], [], [], source) for name in tokenizers}
    found = 0
    for passage in passages:
        splits = {name: _split(passage, tok, prompt_len, n_out) for name, tok in tokenizers.items()}
        if any(s is None for s in splits.values()):
            continue
        found += 1
        for name, (prompt, reference) in splits.items():
            chosen[name].passage_ids.append(passage.passage_id)
            chosen[name].prompt_ids.append(prompt)
            chosen[name].reference_ids.append(reference)
        if found == max_prompts:
            return chosen
    raise PromptSourceError(
        f"prompt source {source!r}: found {found} passage(s) with at least {seq_len} tokens in every model's "
        f"tokenizer (of {len(passages)}), need max_prompts = {max_prompts}; lower --max_prompts, lower "
        f"seq_len or give a source with longer passages")


def random_prompt_set(vocab_size: int, excluded: set[int], seq_len: int, count: int, seed: int) -> PromptSet:
    """Uniform random token ids (for synthetic models without a tokenizer); no references."""
    rng = random.Random(seed * 1_000_003 + seq_len)
    allowed = [i for i in range(vocab_size) if i not in excluded]
    prompt_len = seq_len // 2
    prompts = [[rng.choice(allowed) for _ in range(prompt_len)] for _ in range(count)]
    return PromptSet([f"random:{seed}:{seq_len}:{i}" for i in range(count)], prompts, [], "random_ids")


class PromptProvider:
    """The same passages for every model of a run; each model's prompts per N built once.

    A passage is used for N only when it has at least N tokens in every model's tokenizer, so the
    prompt sets of all models are built together.
    """

    def __init__(self, spec: PromptSpec, models: Sequence[ModelSpec], base_dir: str | Path, seed: int):
        self.spec, self.models, self.base_dir, self.seed = spec, list(models), base_dir, seed
        self._passages: Optional[list[Passage]] = None
        self._sets: dict[int, dict[str, PromptSet]] = {}

    def passages(self) -> list[Passage]:
        if self._passages is None:
            if self.spec.source == "file":
                self._passages = read_prompt_file(resolve_path(self.spec.file, self.base_dir))
            elif self.spec.source == "wikitext":
                self._passages = read_wikitext(self.spec.dataset_cache_dir)
            else:
                self._passages = []
        return self._passages

    def text_sets(self, seq_len: int) -> dict[str, PromptSet]:
        """Per model name, prompts for one N from the text source (all tokenizers at once)."""
        from ..models.loader import load_tokenizer

        if seq_len not in self._sets:
            tokenizers = {}
            for spec in self.models:
                tok = load_tokenizer(spec, self.base_dir)
                if tok is None:
                    raise PromptSourceError(f"models ({spec.name}).tokenizer: no tokenizer, and prompts.source "
                                            f"{self.spec.source!r} needs one; allowed: a tokenizer folder, a "
                                            f"checkpoint that ships one, or prompts.source: random_ids")
                tokenizers[spec.name] = tok
            self._sets[seq_len] = build_prompt_sets(self.passages(), tokenizers, seq_len, self.spec.max_prompts,
                                                    self.spec.source)
        return self._sets[seq_len]

    def check(self, seq_lens: Sequence[int]) -> None:
        """Pre-flight: the text source gives enough passages for every N (raises PromptSourceError)."""
        if self.spec.source != "random_ids":
            for n in seq_lens:
                self.text_sets(n)

    def for_model(self, name: str, vocab_size: int, mask_token_id: Optional[int], seq_len: int) -> PromptSet:
        """The prompt set of one model at one N (random ids avoid the mask token)."""
        if self.spec.source == "random_ids":
            excluded = {mask_token_id} if mask_token_id is not None else set()
            return random_prompt_set(vocab_size, excluded, seq_len, self.spec.max_prompts, self.seed)
        return self.text_sets(seq_len)[name]

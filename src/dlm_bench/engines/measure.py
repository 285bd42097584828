"""An engine cell's per-prompt pairs against the torch path doing the same work, and its answers as ids.

A cell of another engine is timed as torch cells are, by the runner's one cell path (sweep.runner.run_cell: the
engine as a Generator, engines.generator, through the one loop, measure.loop). Its per-prompt pass then runs
each of the first `engines.per_prompt` prompts alone, as `per_prompt_pairs` interleaved pairs of the engine and
the torch path doing the same work (the order drawn per pair) after one untimed run of each, in this one
process: a paired speedup per prompt, the tokens the engine and torch agree on, and the answers the quality pass
scores.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from .. import registry
from ..registry import DIFFUSION, IN_PROCESS
from ..config import Cell
from ..generation import Generator
from ..metrics import timing as metrics
from ..measure.clock import Clock
from ..measure.loop import Arm, time_pair
from ..workload.prompts import PromptSet
from . import Engine, EngineAnswer
from .generator import EngineGenerator


# --------------------------------------------------------------------------- agreement


def canonical_ids(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    """The project tokenizer's own encoding of what `ids` spell (special tokens dropped): two engines
    that produced the same tokens have the same canonical ids, whether they returned ids or text."""
    return encode_text(tokenizer, tokenizer.decode(list(ids), skip_special_tokens=True))


def encode_text(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def token_agreement(a: Sequence[int], b: Sequence[int], n_out: int) -> float:
    """Share of the N_out positions holding the same token in both (a missing position disagrees)."""
    return sum(x == y for x, y in zip(a[:n_out], b[:n_out])) / n_out


def answer_ids(tokenizer: Any, answer: EngineAnswer) -> list[int]:
    """An engine answer as canonical ids (from its ids when it returned them, else from its text)."""
    return canonical_ids(tokenizer, answer.token_ids) if answer.token_ids is not None else encode_text(
        tokenizer, answer.text)


# --------------------------------------------------------------------------- per prompt


@dataclass
class PromptPairs:
    """One prompt's pairs: latencies in ms (pair order), the last answers of each side."""

    passage_id: str
    engine_ms: list[float] = field(default_factory=list)
    torch_ms: list[float] = field(default_factory=list)
    engine_answer: Optional[EngineAnswer] = None
    torch_ids: list[int] = field(default_factory=list)
    torch_steps: int = 0


IDLE_GAP_S = 0.2  # before each timed run of a pair: the other arm's threads stop spinning, so arms never overlap


def run_prompt_pairs(engine: Engine, generator: Generator, prompts: PromptSet, cell: Cell, count: int,
                     pairs: int, clock: Clock, device: torch.device) -> list[PromptPairs]:
    """Each of the first `count` prompts alone: one untimed run per side, then `pairs` pairs (measure.loop
    .time_pair, the order drawn per pair, an idle gap before every run); torch from the cell's seed."""
    out = []
    for i in range(min(count, len(prompts.prompt_ids))):
        ids = torch.tensor([prompts.prompt_ids[i]], dtype=torch.long, device=device)
        record = PromptPairs(prompts.passage_ids[i])
        torch_arm = Arm(generator, ids, cell.n_out, cell.steps, seed=cell.settings.seed)
        engine_arm = Arm(EngineGenerator(engine), ids, cell.n_out, cell.steps, pids=engine.pids())
        timing = time_pair(torch_arm, engine_arm, pairs, 1, clock,
                           random.Random(f"{cell.settings.seed}:{record.passage_id}"), IDLE_GAP_S)
        record.torch_ms, record.engine_ms = timing.reference_ms, timing.contender_ms
        record.engine_answer = engine_arm.runs[-1].trace.report.answers[0]
        record.torch_ids = torch_arm.runs[-1].trace.output_ids[0].tolist()
        record.torch_steps = torch_arm.runs[-1].trace.steps_executed
        out.append(record)
    return out


def per_prompt_rows(records: list[PromptPairs], cell: Cell, tokenizer: Any, eos_id: Optional[int],
                    reference: str) -> list[dict[str, Any]]:
    """The per-prompt table's rows of one cell: tok/s both sides, paired speedup, steps, answer tokens,
    returned tokens and agreement with torch."""
    rows = []
    for r in records:
        a = r.engine_answer
        assert a is not None
        ratios = [t / e for t, e in zip(r.torch_ms, r.engine_ms)]
        engine_ids = answer_ids(tokenizer, a)
        answer_tokens = (metrics.answer_tokens([a.token_ids], eos_id)[0] if a.token_ids is not None
                         else len(engine_ids))
        rows.append({"passage_id": r.passage_id, "reference": reference, "pairs": len(ratios),
                     "engine_ms_median": metrics.median(r.engine_ms), "torch_ms_median": metrics.median(r.torch_ms),
                     "engine_tokens_per_s": metrics.throughput_tokens_per_s(1, cell.n_out, metrics.median(r.engine_ms)),
                     "torch_tokens_per_s": metrics.throughput_tokens_per_s(1, cell.n_out, metrics.median(r.torch_ms)),
                     "speedup_vs_torch": metrics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
                     "steps": a.steps if a.steps is not None else cell.n_out, "forward_passes": a.forward_passes,
                     "answer_tokens": answer_tokens, "tokens_returned": a.tokens_returned,
                     "agreement_with_torch": token_agreement(canonical_ids(tokenizer, r.torch_ids), engine_ids,
                                                             cell.n_out)})
    return rows


def generations_of(records: list[PromptPairs], prompts: PromptSet, tokenizer: Any) -> list[dict[str, Any]]:
    """The engine's answers as the quality pass reads generations (see workload.generations)."""
    index = {p: i for i, p in enumerate(prompts.passage_ids)}
    out = []
    for r in records:
        i, a = index[r.passage_id], r.engine_answer
        assert a is not None
        out.append({"passage_id": r.passage_id, "prompt_text": tokenizer.decode(prompts.prompt_ids[i]),
                    "reference_text": tokenizer.decode(prompts.reference_ids[i]) if prompts.reference_ids else "",
                    "output_ids": a.token_ids if a.token_ids is not None else encode_text(tokenizer, a.text),
                    "output_text": (tokenizer.decode(a.token_ids, skip_special_tokens=True)
                                    if a.token_ids is not None else a.text),
                    "steps_executed": a.steps if a.steps is not None else 0})
    return out


def torch_reference(cell: Cell, ar_decode: str) -> Cell:
    """The torch cell doing the engine cell's work: same sampler and K without a cache (diffusion), or
    the config's first decode mode (AR)."""
    if cell.kind == DIFFUSION:
        uncached = cell.with_decoding(cache=registry.uncached(), forward=registry.baseline(registry.FORWARDS))
        return dataclasses.replace(uncached, engine=IN_PROCESS, weights_format=None)
    return dataclasses.replace(cell.with_decoding(decode=ar_decode), engine=IN_PROCESS, weights_format=None)

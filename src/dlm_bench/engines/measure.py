"""Timing an engine cell, and its per-prompt pairs against the torch path doing the same work.

A cell of another engine is timed as torch cells are: `timing.warmup` untimed batches, then
repetitions until the timing settings say stop (measure.repeats). Its per-prompt pass then runs each
of the first `engines.per_prompt` prompts alone, as `per_prompt_pairs` interleaved pairs (torch, engine;
engine, torch; ...) after one untimed run of each, in this one process: a paired speedup per prompt, the
tokens the engine and torch agree on, and the answers the quality pass scores.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from ..config import Cell
from ..generation import Generator
from ..metrics import timing as metrics
from ..measure.clock import Clock
from ..measure.repeats import another_repetition
from ..quality.prompts import PromptSet
from ..results import Repetition
from . import Engine, EngineAnswer, EngineBatch


@dataclass
class EngineMeasurement:
    """The timed repetitions, the last batch, and answers (over all timed batches) whose returned token
    count was not N_out."""

    repetitions: list[Repetition]
    last: EngineBatch
    answers_not_n_out: int = 0


def repetition_of(cell: Cell, batch: EngineBatch) -> Repetition:
    """A Repetition from one batch: L_e2e the batch's, TTFT / ITL the mean over its requests."""
    rep = Repetition(latency_ms=batch.latency_ms,
                     tokens_per_s=metrics.throughput_tokens_per_s(cell.batch_size, cell.n_out, batch.latency_ms),
                     steps_executed=batch.answers[0].steps or cell.n_out)
    if cell.kind == "autoregressive":
        rep.ttft_ms = metrics.mean_finite([a.ttft_ms for a in batch.answers])
        rep.itl_ms = metrics.mean_finite([a.itl_ms for a in batch.answers])
    else:
        rep.step_ms_p50 = metrics.percentile(batch.step_ms, 50)
        rep.step_ms_p99 = metrics.percentile(batch.step_ms, 99)
    return rep


def measure_engine(engine: Engine, prompt_ids: list[list[int]], cell: Cell) -> EngineMeasurement:
    """Warm up, then time repetitions of the cell's B prompts; EngineError propagates."""
    timing = cell.settings.timing
    for _ in range(timing.warmup):
        engine.run(prompt_ids)
    reps: list[Repetition] = []
    batch: Optional[EngineBatch] = None
    short = 0
    while another_repetition(timing, reps):
        batch = engine.run(prompt_ids)
        reps.append(repetition_of(cell, batch))
        short += sum(a.tokens_returned != cell.n_out for a in batch.answers)
    assert batch is not None
    return EngineMeasurement(reps, batch, short)


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


def time_torch(generator: Generator, ids: torch.Tensor, cell: Cell, clock: Clock) -> tuple[float, list[int], int]:
    """One torch generation of one prompt: (ms, output ids, steps)."""
    start = clock.mark()
    trace = generator.generate(ids, cell.n_out, steps=cell.steps)
    end = clock.mark()
    clock.synchronize()
    return clock.elapsed_ms(start, end), trace.output_ids[0].tolist(), trace.steps_executed


IDLE_GAP_S = 0.2  # before each arm of a pair: the other arm's threads stop spinning, so arms never overlap


def run_prompt_pairs(engine: Engine, generator: Generator, prompts: PromptSet, cell: Cell, count: int,
                     pairs: int, clock: Clock, device: torch.device) -> list[PromptPairs]:
    """Each of the first `count` prompts: one untimed run per side, then `pairs` pairs, order alternating."""
    out = []
    for i in range(min(count, len(prompts.prompt_ids))):
        prompt = prompts.prompt_ids[i]
        ids = torch.tensor([prompt], dtype=torch.long, device=device)
        record = PromptPairs(prompts.passage_ids[i])
        torch.manual_seed(cell.settings.seed)
        generator.generate(ids, cell.n_out, steps=cell.steps)
        time.sleep(IDLE_GAP_S)
        engine.run([prompt])
        for p in range(pairs):
            for side in (("torch", "engine") if p % 2 == 0 else ("engine", "torch")):
                time.sleep(IDLE_GAP_S)
                if side == "torch":
                    torch.manual_seed(cell.settings.seed)
                    ms, record.torch_ids, record.torch_steps = time_torch(generator, ids, cell, clock)
                    record.torch_ms.append(ms)
                else:
                    batch = engine.run([prompt])
                    record.engine_answer = batch.answers[0]
                    record.engine_ms.append(batch.latency_ms)
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
    """The engine's answers as the quality pass reads generations (see quality.generations)."""
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
    if cell.kind == "diffusion":
        return dataclasses.replace(cell, engine="torch", weights_format=None, cache="none", forward="eager")
    return dataclasses.replace(cell, engine="torch", weights_format=None, decode=ar_decode)

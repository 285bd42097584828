"""The llamacpp engine's two faces: llama-diffusion-cli for masked diffusion, llama-server for AR."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from ...config import Cell
from ...metrics import timing as metrics
from .. import EngineAnswer, EngineBatch, EngineError, server_pids
from ..streaming import StreamedAnswer, read_native_chunk, stream_all
from .build import LlamaCpp
from .diffusion_cli import CliError, DiffusionRequest, forward_passes, run_diffusion
from .server import LlamaServer


def streamed_answer(a: StreamedAnswer, n_predicted_fallback: int) -> EngineAnswer:
    """An EngineAnswer from one streamed request (client-side times; the server's own in engine_ms)."""
    offsets_ms = [1000.0 * t for t in a.chunk_times]  # each chunk's arrival, as the torch path's token marks
    timings = a.server_timings or {}
    engine_ms = (timings["prompt_ms"] + timings["predicted_ms"]
                 if "prompt_ms" in timings and "predicted_ms" in timings else math.nan)
    count = a.tokens_returned if a.tokens_returned is not None else (
        len(a.token_ids) if a.token_ids is not None else n_predicted_fallback)
    return EngineAnswer(text=a.text, token_ids=a.token_ids, tokens_returned=count, latency_ms=1000.0 * a.done_s,
                        ttft_ms=metrics.ttft_ms(offsets_ms) if offsets_ms else math.nan,
                        itl_ms=metrics.mean_itl_ms(offsets_ms), engine_ms=engine_ms)


def batch_of(answers: list[StreamedAnswer], wall_s: float, engine: str) -> EngineBatch:
    """The batch, or EngineError naming the first failed request."""
    failed = [a.error for a in answers if a.error]
    if failed:
        raise EngineError(f"{engine}: {failed[0]}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))
    return EngineBatch(1000.0 * wall_s, [streamed_answer(a, len(a.chunk_times)) for a in answers])


class DiffusionCliEngine:
    """One CLI process per prompt (B = 1 cells); the model loads in each, outside the timed loop."""

    name = "llamacpp"

    def __init__(self, llama: LlamaCpp, gguf: Path, cell: Cell, tokenizer: Any, threads: int, timeout_s: float,
                 gpu_layers: int = 0):
        self.llama, self.gguf, self.cell, self.tokenizer = llama, gguf, cell, tokenizer
        self.threads, self.timeout_s, self.gpu_layers = threads, timeout_s, gpu_layers
        self.version, self.build = llama.version, llama.run_flags(gpu_layers)

    def request(self, prompt: Sequence[int]) -> DiffusionRequest:
        c, d = self.cell, self.cell.decoding
        return DiffusionRequest(prompt_text=self.tokenizer.decode(list(prompt)), prompt_len=c.prompt_len,
                                n_out=c.n_out, steps=int(d.steps), block_length=int(d.block_length),
                                schedule=str(d.schedule), sampler=str(d.sampler), temperature=d.temperature,
                                seed=c.settings.seed, threads=self.threads, eps=d.eps, gpu_layers=self.gpu_layers)

    def run(self, prompt_ids: Sequence[Sequence[int]]) -> EngineBatch:
        if len(prompt_ids) != 1:
            raise EngineError(f"llama-diffusion-cli decodes one sequence; got a batch of {len(prompt_ids)}")
        req = self.request(prompt_ids[0])
        try:
            run = run_diffusion(self.llama, self.gguf, req, self.timeout_s)
        except CliError as exc:
            raise EngineError(str(exc)) from None
        # the CLI fills the canvas to prompt + N_out tokens: every answer has N_out tokens (EOS included,
        # which its printed text leaves out)
        answer = EngineAnswer(text=run.text, token_ids=None, tokens_returned=req.n_out, latency_ms=run.total_ms,
                              steps=req.steps, forward_passes=forward_passes(req), engine_ms=run.total_ms)
        return EngineBatch(run.total_ms, [answer], step_ms=run.step_ms)

    def pids(self) -> tuple[int, ...]:
        return ()


class ServerEngine:
    """AR generation through llama-server's native streaming `/completion`: token ids in, token ids out,
    EOS ignored so every answer has N_out tokens, no prompt cache between repetitions."""

    name = "llamacpp"

    def __init__(self, llama: LlamaCpp, server: LlamaServer, cell: Cell, threads: int, timeout_s: float):
        self.server, self.cell, self.threads, self.timeout_s = server, cell, threads, timeout_s
        self.version, self.build = llama.version, llama.run_flags(server.gpu_layers)

    def body(self, prompt: Sequence[int]) -> dict[str, Any]:
        c = self.cell
        return {"prompt": [int(t) for t in prompt], "n_predict": c.n_out, "ignore_eos": True, "stream": True,
                "return_tokens": True, "cache_prompt": False, "temperature": c.decoding.temperature,
                "seed": c.settings.seed, **sampling_fields(c)}

    def run(self, prompt_ids: Sequence[Sequence[int]]) -> EngineBatch:
        if not self.server.alive():
            code = self.server.proc.returncode if self.server.proc else "?"
            raise EngineError(f"llama-server is not running (exit {code}): {self.server.last_log_line()}")
        answers, wall = stream_all(self.server.url + "/completion", [self.body(p) for p in prompt_ids], {},
                                   self.timeout_s, read_native_chunk)
        if not self.server.alive():
            raise EngineError(f"llama-server died during the cell: {self.server.last_log_line()}")
        return batch_of(answers, wall, "llama-server")

    def pids(self) -> tuple[int, ...]:
        return server_pids(self.server)


def sampling_fields(cell: Cell) -> dict[str, Any]:
    """A request's nucleus and repetition penalty where the cell sets them (llama-server's names; its penalty
    looks back 64 tokens, transformers' over the whole sequence)."""
    out: dict[str, Any] = {}
    if cell.decoding.top_p is not None:
        out["top_p"] = cell.decoding.top_p
    if cell.decoding.repetition_penalty is not None:
        out["repeat_penalty"] = cell.decoding.repetition_penalty
    return out


def threads_for(configured: Optional[int], cpu_threads: Optional[int], cores: int) -> int:
    """The engine's thread count: as configured, else the run's cpu_threads, else every core."""
    return configured or cpu_threads or cores

"""What a run's engine cells share: the llama.cpp build, GGUF exports, and running servers.

`EnginePool` is a context manager around the sweep: it builds llama.cpp on first use (with a progress
message), exports each checkpoint once per weights format, keeps one llama-server per GGUF for all cells
that need it (restarting one that died), and stops every server when the sweep ends, however it ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from .. import registry
from ..registry import DIFFUSION
from ..config import LOCAL_SERVER, Cell, Experiment
from . import Engine, EngineError
from .llamacpp.build import BuildError, LlamaCpp, ensure_built
from .llamacpp.engine import DiffusionCliEngine, ServerEngine, threads_for
from .llamacpp.gguf_export import ExportError, export_gguf
from .llamacpp.server import LlamaServer, ServerError
from .openai_engine import OpenAIEngine


ALL_LAYERS = 999  # llama.cpp's -ngl: offload up to this many layers (every layer of any model here)


class EnginePool:
    def __init__(self, exp: Experiment, device: torch.device, log_dir: Path, progress: bool = True):
        self.exp, self.log_dir, self.progress = exp, log_dir, progress
        self._llama: Optional[LlamaCpp] = None
        self._ggufs: dict[tuple[str, str], Path] = {}
        self._servers: dict[Path, LlamaServer] = {}
        self.threads = threads_for(exp.engines.llamacpp.threads, exp.cpu_threads, os.cpu_count() or 1)
        self._gpu_run = device.type == "cuda"
        self.server_flags: tuple[str, ...] = ()  # more llama-server flags (scripts/diagnose_pairs.py tries some)

    @property
    def gpu_layers(self) -> int:
        """Every layer on the GPU when the run is on one and llama.cpp was built with CUDA; none otherwise."""
        return ALL_LAYERS if self._gpu_run and self.llama().cuda else 0

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def llama(self) -> LlamaCpp:
        if self._llama is None:
            try:
                self._llama = ensure_built(self.exp.engines.llamacpp.cache_dir, progress=self.progress)
            except BuildError as exc:
                raise EngineError(str(exc)) from None
        return self._llama

    def gguf(self, cell: Cell, weights_format: str) -> Path:
        key = (cell.model.name, weights_format)
        if key not in self._ggufs:
            if self.progress:
                print(f"llama.cpp: exporting {cell.model.name} to GGUF ({weights_format})", file=sys.stderr)
            try:
                self._ggufs[key] = export_gguf(self.llama(), self.exp.resolve(cell.model.path), weights_format)
            except ExportError as exc:
                raise EngineError(str(exc)) from None
        return self._ggufs[key]

    def server(self, gguf: Path) -> LlamaServer:
        """The running server of a GGUF, started (or restarted after it died) when needed."""
        server = self._servers.get(gguf)
        if server is not None and server.alive():
            return server
        g = self.exp.grid
        parallel = max(g.batch_size)
        server = LlamaServer(self.llama(), gguf, self.threads, parallel, parallel * max(g.seq_len),
                             self.log_dir / f"llama-server-{gguf.stem}.log", gpu_layers=self.gpu_layers,
                             extra=self.server_flags)
        try:
            server.start()
        except ServerError as exc:
            raise EngineError(str(exc)) from None
        self._servers[gguf] = server
        return server

    def engine_for(self, cell: Cell, tokenizer: Any) -> Engine:
        """The engine that runs a non-torch cell (its registry entry's factory); EngineError (one line) when it
        cannot be had."""
        if tokenizer is None:
            raise EngineError(f"{cell.model.name} has no tokenizer; engines other than torch need one")
        entry = registry.ENGINES.get(str(cell.engine))
        if entry is None or entry.factory is None:
            raise EngineError(f"engine {cell.engine!r} is not an engine the pool runs")
        return registry.resolve(entry.factory)(self, cell, tokenizer)


def llamacpp_engine(pool: EnginePool, cell: Cell, tokenizer: Any) -> Engine:
    """llama.cpp for a cell: its diffusion CLI for a diffusion model, its server for an AR model."""
    spec = pool.exp.engines.llamacpp
    gguf = pool.gguf(cell, str(cell.weights_format))
    if cell.kind == DIFFUSION:
        return DiffusionCliEngine(pool.llama(), gguf, cell, tokenizer, pool.threads, spec.timeout_s, pool.gpu_layers)
    return ServerEngine(pool.llama(), pool.server(gguf), cell, pool.threads, spec.timeout_s)


def openai_engine(pool: EnginePool, cell: Cell, tokenizer: Any) -> Engine:
    """An OpenAI-compatible endpoint for a cell: the configured URL, or the harness's own llama-server."""
    o = pool.exp.engines.openai
    if o.url == LOCAL_SERVER:
        server = pool.server(pool.gguf(cell, o.weights_format))
        return OpenAIEngine(server.url + "/v1", o.served_model or cell.model.name, cell, tokenizer, o.timeout_s,
                            o.api_key_env, local_server=server,
                            version=f"OpenAI API of the harness's llama-server ({pool.llama().version})",
                            build=pool.llama().run_flags(server.gpu_layers), threads=pool.threads)
    return OpenAIEngine(str(o.url), o.served_model or cell.model.name, cell, tokenizer, o.timeout_s, o.api_key_env)

"""The openai engine: streaming `/v1/completions` requests, B at once, to any OpenAI-compatible server.

Prompts go as text (the project tokenizer's decoding of the prompt ids); answers come back as text,
so token agreement re-encodes them. `ignore_eos` is sent (llama.cpp, vLLM and SGLang read it), and a
row flags every answer whose returned token count differs from N_out. The API key is read from the
environment variable the config names, sent as a bearer token, and never written anywhere.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from ..config import Cell
from . import EngineBatch, EngineError, server_pids
from .llamacpp.engine import batch_of, sampling_fields
from .llamacpp.server import LlamaServer
from .streaming import read_openai_chunk, stream_all


class OpenAIEngine:
    """threads: known only for the harness's own server."""

    name = "openai"

    def __init__(self, base_url: str, served_model: str, cell: Cell, tokenizer: Any, timeout_s: float,
                 api_key_env: Optional[str] = None, local_server: Optional[LlamaServer] = None,
                 version: str = "", build: str = "", threads: Optional[int] = None):
        self.url = base_url.rstrip("/") + "/completions"
        self.served_model, self.cell, self.tokenizer, self.timeout_s = served_model, cell, tokenizer, timeout_s
        self.api_key_env, self.local_server = api_key_env, local_server
        self.version = version or f"OpenAI-compatible server at {base_url}"
        self.build, self.threads = build, threads

    def headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EngineError(f"the environment variable {self.api_key_env} (engines.openai.api_key_env) is not set")
        return {"Authorization": f"Bearer {key}"}

    def body(self, prompt: Sequence[int]) -> dict[str, Any]:
        c = self.cell
        body = {"model": self.served_model, "prompt": self.tokenizer.decode(list(prompt)), "max_tokens": c.n_out,
                "temperature": c.decoding.temperature, "seed": c.settings.seed, "stream": True, "ignore_eos": True,
                "stream_options": {"include_usage": True}, **sampling_fields(c)}
        if self.local_server is not None:
            body["cache_prompt"] = False  # llama-server: no prompt cache between repetitions
        return body

    def run(self, prompt_ids: Sequence[Sequence[int]]) -> EngineBatch:
        if self.local_server is not None and not self.local_server.alive():
            raise EngineError(f"the local llama-server is not running: {self.local_server.last_log_line()}")
        answers, wall = stream_all(self.url, [self.body(p) for p in prompt_ids], self.headers(), self.timeout_s,
                                   read_openai_chunk)
        return batch_of(answers, wall, "openai")

    def pids(self) -> tuple[int, ...]:
        return server_pids(self.local_server)

"""`dlm-bench serve`: an OpenAI-compatible `/v1/completions` endpoint over one of the harness's own generation
paths (a diffusion sampler with its K and cache, or an AR decode path), so any OpenAI client, the harness's own
`openai` engine and lm-eval's `local-completions` model can use it.

    dlm-bench serve --config config/experiments_tasks_cpu.yaml --model austen-mdm --sampler low_confidence \\
        --cache dual --steps 16 [--host 127.0.0.1] [--port 8000]

The path is the first torch cell of the config's grid that matches the flags (its seed, block length, schedule
and the rest come with it). Requests run one at a time (a lock): a list of prompts of equal token length is
generated as one batch, other lists prompt by prompt. What a request may say:

- `prompt`: a string, a list of strings (each encoded as the tokenizer encodes a document, with its BOS token
  where it adds one), a list of token ids, or a list of lists of token ids (used as given);
- `max_tokens`: the answer length in tokens (a diffusion path: a multiple of its block length whose block count
  divides K, as for a cell); `temperature`, and on an AR path `top_p` and `repetition_penalty` /
  `repeat_penalty`; `seed` (the cell's seed when absent);
- `stop`: a string or list; the answer is cut at the first one (finish_reason "stop");
- `ignore_eos`: true returns all `max_tokens` tokens; otherwise the answer ends at the first end-of-sequence
  token;
- `logprobs` (0-5) with `echo` on an AR path: each token's log-probability and the top alternatives (the
  prompt's too with `echo`), read from one forward pass over prompt and answer;
- `stream`: server-sent events; the answer is generated whole, then sent as one chunk (a diffusion answer does
  not exist before its last step), followed by a chunk with `usage` when `stream_options.include_usage` is set.

Anything else (an unknown field, n or best_of above 1, logprobs on a diffusion path, a bad value) is refused
with HTTP 400 and a message naming the field. Bound to 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import torch

from .registry import DIFFUSION, IN_PROCESS
from .models.loader import max_positions

log = logging.getLogger(__name__)

ACCEPTED = {"model", "prompt", "max_tokens", "temperature", "top_p", "repetition_penalty", "repeat_penalty", "seed",
            "stop", "ignore_eos", "logprobs", "echo", "stream", "stream_options", "n", "best_of", "user",
            "frequency_penalty", "presence_penalty", "cache_prompt"}
MAX_LOGPROBS = 5


class RequestError(ValueError):
    """A request the path cannot honour: the field and why (HTTP 400)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class Completion:
    """One answer: its text, token ids, why it ended, and (logprobs) the token log-probabilities."""

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: Optional[dict] = None


def _number(body: dict, field: str, default: float, low: float, high: float) -> float:
    value = body.get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise RequestError(field, f"{value!r} is not allowed; allowed: numbers in [{low:g}, {high:g}]")
    return float(value)


def _prompts(body: dict, tokenizer: Any) -> list[list[int]]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompt = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        prompt = [prompt]
    if not (isinstance(prompt, list) and prompt):
        raise RequestError("prompt", "missing or empty; allowed: a string, a list of strings, a list of token ids, "
                                     "or a list of lists of token ids")
    out = []
    for p in prompt:
        if isinstance(p, str):
            ids = tokenizer(p)["input_ids"]  # a text prompt as the tokenizer encodes a document (its BOS, if any)
        elif isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
            ids = list(p)
        else:
            raise RequestError("prompt", "a list item is neither a string nor a list of token ids")
        if not ids:
            raise RequestError("prompt", "a prompt with no tokens; allowed: at least one token")
        out.append(ids)
    return out


def _stops(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise RequestError("stop", "allowed: a string or a list of strings")
    return [s for s in stop if s]


class ServedPath:
    """A loaded model and the cell whose path it serves; `complete` answers one request body."""

    def __init__(self, cell: Any, loaded: Any):
        self.cell, self.loaded = cell, loaded
        self.lock = threading.Lock()
        self._generators: dict[tuple, Any] = {}
        self.positions = max_positions(loaded.model)

    @property
    def name(self) -> str:
        return self.cell.model.name

    def generator(self, temperature: float, top_p: Optional[float], penalty: Optional[float]):
        from .generation.cell_generator import make_generator

        key = (temperature, top_p, penalty)
        if key not in self._generators:
            sampling = {} if self.cell.kind == DIFFUSION else dict(top_p=top_p, repetition_penalty=penalty)
            cell = self.cell.with_decoding(temperature=temperature, **sampling)  # check() refuses AR-only fields
            self._generators[key] = make_generator(cell, self.loaded)
        return self._generators[key]

    def check(self, body: dict) -> dict:
        """The request's settings, or RequestError naming the first field the path cannot honour."""
        unknown = sorted(set(body) - ACCEPTED)
        if unknown:
            raise RequestError(unknown[0], f"not supported; allowed fields: {', '.join(sorted(ACCEPTED))}")
        if body.get("model") not in (None, self.name):
            raise RequestError("model", f"{body['model']!r} is not served here; allowed: {self.name}")
        for field in ("n", "best_of"):
            if body.get(field, 1) != 1:
                raise RequestError(field, f"{body[field]!r} is not allowed; allowed: 1")
        for field in ("frequency_penalty", "presence_penalty"):
            if body.get(field, 0) not in (0, 0.0, None):
                raise RequestError(field, f"{body[field]!r} is not allowed; allowed: 0")
        max_tokens = body.get("max_tokens", 16)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError("max_tokens", f"{max_tokens!r} is not allowed; allowed: integers >= 1")
        is_diffusion = self.cell.kind == DIFFUSION
        if is_diffusion:
            from .config import diffusion_shape_error

            decoding = self.cell.decoding
            problem = diffusion_shape_error(max_tokens, int(decoding.block_length), int(decoding.steps))
            if problem:
                raise RequestError("max_tokens", f"{max_tokens} does not fit this path's K = {decoding.steps} and "
                                                 f"block length {decoding.block_length} ({problem})")
        temperature = _number(body, "temperature", 0.0, 0.0, 2.0)
        top_p = _number(body, "top_p", 1.0, 1e-6, 1.0)
        penalty = body.get("repetition_penalty", body.get("repeat_penalty"))
        penalty = None if penalty is None else _number({"repetition_penalty": penalty}, "repetition_penalty", 1.0,
                                                       0.5, 2.0)
        if is_diffusion and (top_p != 1.0 or penalty not in (None, 1.0)):
            raise RequestError("top_p" if top_p != 1.0 else "repetition_penalty",
                               "not supported by a diffusion path; allowed: absent (or 1)")
        logprobs = body.get("logprobs")
        if logprobs is not None:
            if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= MAX_LOGPROBS:
                raise RequestError("logprobs", f"{logprobs!r} is not allowed; allowed: integers 0..{MAX_LOGPROBS}")
            if is_diffusion:
                raise RequestError("logprobs", "not supported by a diffusion path (it has no per-token "
                                               "left-to-right probabilities); allowed: absent")
        if body.get("echo") and logprobs is None:
            raise RequestError("echo", "supported only with logprobs; allowed: false, or logprobs with it")
        seed = body.get("seed", self.cell.settings.seed)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise RequestError("seed", f"{seed!r} is not allowed; allowed: an integer")
        stream_options = body.get("stream_options") or {}
        if not isinstance(stream_options, dict):
            raise RequestError("stream_options", "allowed: a mapping such as {\"include_usage\": true}")
        return {"max_tokens": max_tokens, "temperature": temperature, "top_p": None if top_p == 1.0 else top_p,
                "penalty": penalty, "logprobs": logprobs, "echo": bool(body.get("echo")), "seed": seed,
                "stop": _stops(body), "ignore_eos": bool(body.get("ignore_eos")), "stream": bool(body.get("stream")),
                "include_usage": bool(stream_options.get("include_usage"))}

    def complete(self, body: dict) -> tuple[list[Completion], dict, int]:
        """(answers, settings, prompt tokens) of one request body; raises RequestError."""
        settings = self.check(body)
        prompts = _prompts(body, self.loaded.tokenizer)
        n_out = settings["max_tokens"]
        if self.positions is not None and max(len(p) for p in prompts) + n_out > self.positions:
            raise RequestError("max_tokens", f"prompt + max_tokens exceeds the model's {self.positions} positions")
        generator = self.generator(settings["temperature"], settings["top_p"], settings["penalty"])
        device = self.loaded.device
        outputs: list[list[int]] = []
        with self.lock, torch.inference_mode():
            groups = [prompts] if len({len(p) for p in prompts}) == 1 else [[p] for p in prompts]
            for group in groups:
                torch.manual_seed(settings["seed"])
                trace = generator.generate(torch.tensor(group, dtype=torch.long, device=device), n_out,
                                           steps=self.cell.steps)
                outputs.extend(trace.output_ids.tolist())
            answers = [self.answer(p, o, settings) for p, o in zip(prompts, outputs)]
        return answers, settings, sum(len(p) for p in prompts)

    def answer(self, prompt: list[int], output: list[int], settings: dict) -> Completion:
        tokenizer, eos = self.loaded.tokenizer, self.loaded.eos_token_id
        ids, reason = output, "length"
        if not settings["ignore_eos"] and eos is not None and eos in ids:
            ids, reason = ids[:ids.index(eos)], "stop"
        text = tokenizer.decode(ids, skip_special_tokens=True)
        for stop in settings["stop"]:
            if stop in text:
                text, reason = text[:text.index(stop)], "stop"
        if reason == "stop" and settings["stop"]:  # the tokens returned are those of the text returned
            ids = ids[:len(tokenizer(text, add_special_tokens=False)["input_ids"])] if text else []
        logprobs = self.logprobs(prompt, ids, settings) if settings["logprobs"] is not None else None
        if settings["echo"]:
            text = tokenizer.decode(prompt) + text
        return Completion(text, ids, reason, logprobs)

    def logprobs(self, prompt: list[int], output: list[int], settings: dict) -> dict:
        """OpenAI's logprobs object for the answer's tokens (and the prompt's with echo; the first prompt token has
        none), from one forward pass of the AR model over prompt and answer."""
        tokenizer, k = self.loaded.tokenizer, settings["logprobs"]
        ids = prompt + output
        with torch.inference_mode():
            logits = self.loaded.model(torch.tensor([ids], device=self.loaded.device)).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        first = 0 if settings["echo"] else len(prompt)
        tokens, token_logprobs, top = [], [], []
        for i in range(first, len(ids)):
            tokens.append(tokenizer.decode([ids[i]]))
            if i == 0:
                token_logprobs.append(None)
                top.append(None)
                continue
            token_logprobs.append(float(logp[i - 1, ids[i]]))
            best = torch.topk(logp[i - 1], max(k, 1))
            top.append({tokenizer.decode([int(t)]): float(v) for v, t in zip(best.values, best.indices)})
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
                "text_offset": [0] * len(tokens)}


def response_body(path: ServedPath, answers: list[Completion], prompt_tokens: int) -> dict:
    return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": path.name,
            "choices": [{"index": i, "text": a.text, "finish_reason": a.finish_reason, "logprobs": a.logprobs}
                        for i, a in enumerate(answers)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(len(a.token_ids) for a in answers),
                      "total_tokens": prompt_tokens + sum(len(a.token_ids) for a in answers)}}


def make_handler(path: ServedPath):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args) -> None:
            log.debug("%s %s", self.address_string(), fmt % args)

        def send_json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status: int, message: str, field: Optional[str] = None) -> None:
            self.send_json(status, {"error": {"message": message, "type": "invalid_request_error", "param": field,
                                              "code": None}})

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self.send_json(200, {"object": "list", "data": [{"id": path.name, "object": "model",
                                                                 "owned_by": "dlm-bench"}]})
            elif self.path.rstrip("/") == "/health":
                self.send_json(200, {"status": "ok"})
            else:
                self.error(404, f"no such endpoint: {self.path}; allowed: /v1/completions, /v1/models, /health")

        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
                self.error(404, f"no such endpoint: {self.path}; allowed: POST /v1/completions")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
            except (ValueError, UnicodeDecodeError):
                self.error(400, "the body is not valid JSON")
                return
            if not isinstance(body, dict):
                self.error(400, "the body is not a JSON object")
                return
            try:
                answers, settings, prompt_tokens = path.complete(body)
            except RequestError as exc:
                self.error(400, str(exc), exc.field)
                return
            except Exception as exc:  # a failure of the model itself: the server stays up
                log.exception("request failed")
                self.error(500, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
                return
            reply = response_body(path, answers, prompt_tokens)
            if settings["stream"]:
                self.stream(reply, settings["include_usage"])
            else:
                self.send_json(200, reply)

        def stream(self, reply: dict, include_usage: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            head = {k: reply[k] for k in ("id", "object", "created", "model")}
            events = [{**head, "choices": [c]} for c in reply["choices"]]
            if include_usage:
                events.append({**head, "choices": [], "usage": reply["usage"]})
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def pick_cell(exp: Any, model: str, options: dict) -> Any:
    """The first torch cell of the grid for `model` whose fields equal the given options (None = any)."""
    from .config import ConfigError, expand_cells

    names = [m.name for m in exp.models]
    if model not in names:
        raise ConfigError(f"--model: {model!r} is not in the config; allowed: {', '.join(names)}")
    cells = [c for c in expand_cells(exp) if c.model.name == model and c.engine == IN_PROCESS]
    for name, value in options.items():
        if value is not None:
            kept = [c for c in cells if c.identity()[name] == value]
            if not kept:
                allowed = sorted({str(c.identity()[name]) for c in cells})
                raise ConfigError(f"--{name}: {value!r} is not in the grid for {model}; allowed: {', '.join(allowed)}")
            cells = kept
    return min(cells, key=lambda c: c.batch_size)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlm-bench serve", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="experiment YAML file (its models and grid)")
    p.add_argument("--model", required=True, help="the config model to serve")
    p.add_argument("--steps", type=int, help="diffusion: K of the grid")
    p.add_argument("--sampler", help="diffusion: a sampler of the config")
    p.add_argument("--cache", help="diffusion: a cache of the config")
    p.add_argument("--decode", help="AR: a decode path of the config")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed)")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str]) -> int:
    from .config import ConfigError, load_experiment
    from .measure.environment import resolve_device
    from .models.loader import LoadSettings, load_model

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        exp = load_experiment(args.config)
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port: {args.port} is not allowed; allowed: 0..65535")
        cell = pick_cell(exp, args.model, {"steps": args.steps, "sampler": args.sampler, "cache": args.cache,
                                           "decode": args.decode})
        device = resolve_device(exp.device)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    spec = next(m for m in exp.models if m.name == args.model)
    loaded = load_model(spec, device, LoadSettings(exp.precision, exp.attention, exp.seed, exp.base_dir))
    if loaded.tokenizer is None:
        print(f"config error: --model: {args.model} has no tokenizer; a server needs one", file=sys.stderr)
        return 2
    path = ServedPath(cell, loaded)
    try:
        server = ThreadingHTTPServer((args.host, args.port), make_handler(path))
    except OSError as exc:
        print(f"serve error: cannot bind {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    kind = "diffusion" if cell.kind == DIFFUSION else "AR"
    print(f"serving {args.model} ({kind}: {cell.describe()}) at http://{host}:{port}/v1/completions", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

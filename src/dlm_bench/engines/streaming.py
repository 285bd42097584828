"""Streaming completion requests (server-sent events), timed on the client, B at a time.

Both the llama.cpp engine (llama-server's native `/completion`) and the OpenAI engine (any
`/v1/completions`) send their requests through `stream_all`: each request is a thread that records
when every chunk carrying text arrived, so TTFT, ITL and end-to-end time come from the client's
clock (time.perf_counter) as a user would see them.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class StreamedAnswer:
    """One streamed request. Times in s since the batch started (perf_counter), counts in tokens."""

    chunk_times: list[float] = field(default_factory=list)  # arrival of each chunk that carried text/tokens
    text: str = ""
    token_ids: Optional[list[int]] = None  # when the server streams ids (llama-server's return_tokens)
    tokens_returned: Optional[int] = None  # the server's count (usage / tokens_predicted), else chunks
    done_s: float = float("nan")
    server_timings: Optional[dict] = None  # llama-server's own `timings`, when it sends them
    finished: bool = False  # the stream said it was complete ([DONE], or llama-server's `stop`)
    error: Optional[str] = None


# reads one parsed SSE event into the answer; returns True when the event carried output
ChunkReader = Callable[[dict, StreamedAnswer], bool]


def read_native_chunk(event: dict, answer: StreamedAnswer) -> bool:
    """llama-server `/completion`: `content`, `tokens`, and on the last event (`stop`) `timings`."""
    answer.finished = answer.finished or bool(event.get("stop"))
    if "timings" in event:
        answer.server_timings = event["timings"]
    if "tokens_predicted" in event:
        answer.tokens_returned = int(event["tokens_predicted"])
    ids = event.get("tokens") or []
    if answer.token_ids is None:
        answer.token_ids = []
    answer.token_ids.extend(int(t) for t in ids)
    answer.text += event.get("content", "")
    return bool(ids or event.get("content"))


def read_openai_chunk(event: dict, answer: StreamedAnswer) -> bool:
    """OpenAI `/v1/completions`: `choices[0].text`; `usage` (when sent) on the last event."""
    if event.get("usage"):
        answer.tokens_returned = int(event["usage"].get("completion_tokens", 0))
    if event.get("timings"):
        answer.server_timings = event["timings"]
    choices = event.get("choices") or []
    text = choices[0].get("text", "") if choices else ""
    answer.text += text or ""
    return bool(text)


def _stream_one(url: str, body: dict, headers: dict, timeout_s: float, t0: float, reader: ChunkReader,
                answer: StreamedAnswer) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            for raw in reply:
                line = raw.decode("utf-8", errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    answer.finished = True
                    break
                event = json.loads(payload)
                if "error" in event:
                    raise RuntimeError(str(event["error"])[:300])
                if reader(event, answer):
                    answer.chunk_times.append(time.perf_counter() - t0)
        answer.done_s = time.perf_counter() - t0
        if not answer.finished:
            answer.error = f"{url}: the stream ended before the answer was complete"
    except urllib.error.HTTPError as exc:
        answer.error = f"HTTP {exc.code} from {url}: {exc.read()[:200].decode(errors='replace')}"
    except TimeoutError:
        answer.error = f"{url}: no data within {timeout_s:g} s"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        answer.error = f"{url} unreachable or failed: {reason}"
    except (ValueError, RuntimeError) as exc:
        answer.error = f"{url}: {exc}"


def stream_all(url: str, bodies: list[dict], headers: dict[str, Any], timeout_s: float,
               reader: ChunkReader) -> tuple[list[StreamedAnswer], float]:
    """Send every body at once (one thread each); returns the answers and the batch's wall time in s."""
    answers = [StreamedAnswer() for _ in bodies]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_stream_one, args=(url, body, headers, timeout_s, t0, reader, answer),
                                daemon=True) for body, answer in zip(bodies, answers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 5)
    wall = time.perf_counter() - t0
    for t, answer in zip(threads, answers):
        if t.is_alive() and answer.error is None:
            answer.error = f"{url}: no answer within {timeout_s:g} s"
    return answers, wall

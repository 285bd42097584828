"""A `llama-server` that the harness starts, health-checks and always stops.

The server listens on 127.0.0.1 at a port the kernel picked free. It is stopped when its context
ends (errors and Ctrl-C included), at interpreter exit, and by the kernel when the harness process
dies (Linux parent-death signal), so a sweep never leaves one behind.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from .build import LlamaCpp

_RUNNING: set["LlamaServer"] = set()


class ServerError(RuntimeError):
    """The server did not start, or died; the message is one line and names its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the harness process dies (Linux prctl PR_SET_PDEATHSIG). SIGKILL,
    because the pairs step stops the server (SIGSTOP) while the other arm runs, and a stopped process leaves
    any other signal pending."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


class LlamaServer:
    """`with LlamaServer(...) as server:` runs one llama-server for one GGUF; `server.url` is its base URL.

    parallel: request slots (at least the largest batch sent at once); context: tokens for all slots
    together (each slot gets context / parallel); threads: CPU threads for generation and prompt;
    gpu_layers: layers offloaded to the GPU (0 on a CPU run).
    """

    def __init__(self, llama: LlamaCpp, gguf: Path, threads: int, parallel: int, context: int,
                 log_path: Path, start_timeout_s: float = 120.0, gpu_layers: int = 0, extra: tuple[str, ...] = ()):
        self.cmd = [str(llama.binary("llama-server")), "-m", str(gguf), "--host", "127.0.0.1", "--port", "0",
                    "-t", str(threads), "-tb", str(threads), "-np", str(parallel), "-c", str(context),
                    "-ngl", str(gpu_layers), "--log-colors", "off", *extra]
        self.log_path, self.start_timeout_s, self.gpu_layers = log_path, start_timeout_s, gpu_layers
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return (lines or [""])[-1][:300]

    def start(self) -> "LlamaServer":
        if not Path(self.cmd[0]).is_file():
            raise ServerError(f"llama-server not found at {self.cmd[0]}")
        self.port = free_port()
        self.cmd[self.cmd.index("--port") + 1] = str(self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        _RUNNING.add(self)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise ServerError(f"llama-server exited with {self.proc.returncode} while starting: "
                                  f"{self.last_log_line()} (log: {self.log_path})")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"llama-server was not healthy within {self.start_timeout_s:.0f} s (log: {self.log_path})")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                return reply.status == 200 and json.loads(reply.read() or b"{}").get("status") == "ok"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate (then kill after 10 s); safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.send_signal(signal.SIGCONT)  # a server stopped by a pair takes its SIGTERM only when continued
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _RUNNING.discard(self)

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()

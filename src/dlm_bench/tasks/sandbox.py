"""Running untrusted model-written programs: a child interpreter with limits, in a private folder.

Each program runs in a fresh `python -I -S -B` (no user site, no site-packages, no environment variables of
Python's, no bytecode written) started in its own session, with its working folder, HOME and TMPDIR in a
private temporary folder that is deleted afterwards, and with these limits:

- wall clock (`time_s`): the whole process group is killed when it runs past it; CPU time (RLIMIT_CPU) one
  second more;
- memory: address space (RLIMIT_AS) `memory_mb`; file size (RLIMIT_FSIZE) `file_mb`;
- an audit hook (PEP 578), installed before the program's first line and impossible to remove, that ends the
  process at once (exit code VIOLATION) when the program opens a socket, starts or signals a process (fork,
  exec, spawn, subprocess, os.system, kill), loads native code through ctypes, or writes, creates, renames or
  deletes a file outside its folder. The program cannot catch this: the hook exits before control returns.

The outcome of a run is one `SandboxResult`: passed (exit code 0), or the reason it did not.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

VIOLATION = 86  # the child's exit code when the audit hook stopped it

# The child's first code: the hook, then the program (read from program.py in the private folder).
_BOOTSTRAP = r'''
import os, sys
_ROOT = os.path.realpath(os.getcwd())
_EXIT = os._exit
_WRITE = os.write
_FORBIDDEN = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
              "os.forkpty", "os.kill", "os.killpg", "os.setsid", "pty.", "ctypes.", "resource.setrlimit",
              "resource.prlimit", "sys.remote_exec")
_PATH_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
                "os.symlink", "os.truncate", "os.utime", "shutil.")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def _inside(path):
    if isinstance(path, int):
        return True  # an open descriptor: it was checked when it was opened
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return real == _ROOT or real.startswith(_ROOT + os.sep)

def _stop(what):
    _WRITE(2, ("sandbox: forbidden: " + what + "\n").encode())
    _EXIT(%(violation)d)

def _hook(event, args):
    if event.startswith(_FORBIDDEN):
        _stop(event)
    if event == "open":
        path, mode, flags = args
        writes = (mode is not None and any(c in mode for c in "wax+")) or (mode is None and flags & _WRITE_FLAGS)
        if writes and not _inside(path):
            _stop("writing " + repr(path))
    elif event.startswith(_PATH_EVENTS):
        for arg in args:
            if isinstance(arg, (str, bytes)) and not _inside(arg):
                _stop(event + " " + repr(arg))

sys.addaudithook(_hook)
with open("program.py", encoding="utf-8") as _f:
    _source = _f.read()
_globals = {"__name__": "__main__", "__builtins__": __builtins__}
exec(compile(_source, "program.py", "exec"), _globals)
''' % {"violation": VIOLATION}


@dataclass(frozen=True)
class Limits:
    """What one program may use: wall-clock seconds, address space and largest file in MiB."""

    time_s: float = 10.0
    memory_mb: int = 1024
    file_mb: int = 16


@dataclass(frozen=True)
class SandboxResult:
    """passed: the program exited 0 within its limits. reason: '' when passed, else why not (timeout, memory,
    forbidden: <what>, exit code N, signal N) with the last line the program wrote to stderr."""

    passed: bool
    reason: str
    wall_s: float


def _limit_child(limits: Limits):
    def apply() -> None:
        cpu = int(limits.time_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def run_program(source: str, limits: Limits = Limits()) -> SandboxResult:
    """Run `source` as a Python program under `limits` in a fresh private folder; never raises for anything
    the program does."""
    folder = Path(tempfile.mkdtemp(prefix="dlm-bench-sandbox-"))
    try:
        (folder / "program.py").write_text(source, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "TMPDIR": str(folder), "LANG": "C.UTF-8",
               "no_proxy": "*"}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP], cwd=folder, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=_limit_child(limits))
        try:
            _, err = proc.communicate(timeout=limits.time_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return SandboxResult(False, f"timeout ({limits.time_s:g} s)", time.perf_counter() - t0)
        finally:
            _kill_group(proc)  # anything the program left behind in its session
        wall = time.perf_counter() - t0
        stderr = err.decode("utf-8", errors="replace")
        code = proc.returncode
        if code == 0:
            return SandboxResult(True, "", wall)
        if code == VIOLATION and "sandbox: forbidden:" in stderr:
            return SandboxResult(False, _last_line(stderr.split("sandbox: ", 1)[1]), wall)
        if "MemoryError" in stderr:
            return SandboxResult(False, f"memory ({limits.memory_mb} MiB)", wall)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            what = "cpu time" if name == "SIGXCPU" else f"signal {name}"
            return SandboxResult(False, what, wall)
        return SandboxResult(False, f"exit code {code}: {_last_line(stderr)}", wall)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

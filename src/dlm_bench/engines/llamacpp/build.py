"""llama.cpp built from the source tree that a pinned PyPI source distribution vendors.

`ensure_built()` downloads the sdist of `llama-cpp-python` (PyPI, the only place it reaches), unpacks
its `vendor/llama.cpp` tree and builds the few binaries the harness runs, with cmake, into a cache
folder outside the work tree. It is idempotent: a build whose stamp matches the pinned version, flags
and targets is reused; a file lock keeps two processes (e.g. SLURM array tasks) from building at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tqdm import tqdm

SDIST_PACKAGE, SDIST_VERSION = "llama-cpp-python", "0.3.36"  # the pinned source distribution
TARGETS = ("llama-server", "llama-diffusion-cli", "llama-quantize")
# a build of only what the harness runs: no tests, no web UI (its prebuilt copy would be downloaded), no TLS
# (the server listens on loopback), tuned for the building machine; with the CUDA backend on a GPU machine.
# Without ggml's AMX kernels: GGML_NATIVE compiles them in on a CPU with AMX-INT8, and on such a Xeon (a 2-core
# VM) llama-diffusion-cli stopped with SIGILL at their first tileloadd on a q8_0 model; undefining the macro
# that selects them leaves the AVX-512 kernels, and changes nothing on a CPU without AMX
NO_AMX = "-U__AMX_INT8__"
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={NO_AMX}",
               f"-DCMAKE_CXX_FLAGS={NO_AMX}", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_UI=OFF",
               "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_APP=OFF")
CUDA_FLAGS = ("-DGGML_CUDA=ON",)  # added where nvcc is on the PATH and nvidia-smi lists a GPU
BUILD_MINUTES_2_CORES = "about 5"  # measured: the three targets with -j2 on 2 idle cores, 4.4-5.4 min (README)


class BuildError(RuntimeError):
    """llama.cpp could not be fetched or built; the message says which step and where its log is."""


@dataclass(frozen=True)
class LlamaCpp:
    """A built llama.cpp: its source tree (for the GGUF converter), binaries and how they were built."""

    root: Path  # the cache folder of this version
    version: str  # what rows record as engine_version
    build_flags: str  # what rows record as engine_build
    cuda: bool = False  # built with the CUDA backend (layers offload to the GPU with -ngl)

    @property
    def tree(self) -> Path:
        return self.root / "src"

    def binary(self, name: str) -> Path:
        return self.root / "build" / "bin" / name

    def run_flags(self, gpu_layers: int) -> str:
        """What rows record as engine_build: the build's flags and the layers a run offloads."""
        return f"{self.build_flags}; -ngl {gpu_layers}"


def cache_root(cache_dir: Optional[str | Path] = None) -> Path:
    """Where builds live: `cache_dir`, else $DLM_BENCH_CACHE, else ~/.cache/dlm-bench."""
    base = cache_dir or os.environ.get("DLM_BENCH_CACHE") or Path.home() / ".cache" / "dlm-bench"
    return Path(base).expanduser().resolve() / f"llamacpp-{SDIST_VERSION}"


def gpu_visible() -> bool:
    """Whether nvidia-smi lists a GPU here (a CUDA compiler alone does not make a GPU machine)."""
    if not shutil.which("nvidia-smi"):
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def cmake_flags() -> tuple[str, ...]:
    """The build's flags on this machine: CPU always, CUDA too where nvcc is found and a GPU is visible."""
    return CMAKE_FLAGS + (CUDA_FLAGS if shutil.which("nvcc") and gpu_visible() else ())


def _stamp() -> dict:
    return {"sdist": f"{SDIST_PACKAGE}=={SDIST_VERSION}", "cmake_flags": list(cmake_flags()), "targets": list(TARGETS)}


def _describe(root: Path) -> LlamaCpp:
    ggml = ""
    configure_log = root / "configure.log"
    if configure_log.is_file():
        found = re.search(r"ggml version: (\S+)", configure_log.read_text(errors="replace"))
        ggml = f", ggml {found.group(1)}" if found else ""
    flags = cmake_flags()
    return LlamaCpp(root, f"llama.cpp from {SDIST_PACKAGE} {SDIST_VERSION}{ggml}", " ".join(flags),
                    cuda=bool(set(CUDA_FLAGS) & set(flags)))


def find_built(cache_dir: Optional[str | Path] = None) -> Optional[LlamaCpp]:
    """The finished build in the cache, or None (nothing is fetched or built)."""
    root = cache_root(cache_dir)
    stamp = root / "build" / "dlm-bench-build.json"
    try:
        done = json.loads(stamp.read_text()) == _stamp()
    except (OSError, ValueError):
        return None
    built = _describe(root)
    return built if done and all(built.binary(t).is_file() for t in TARGETS) else None


def build_tools_missing(cache_dir: Optional[str | Path] = None) -> Optional[str]:
    """Why llama.cpp could not be built here (no finished build and no cmake or C++ compiler), or None."""
    if find_built(cache_dir) is not None:
        return None
    missing = [tool for tool, names in (("cmake", ("cmake",)), ("a C++ compiler", ("c++", "g++", "clang++")))
               if not any(shutil.which(n) for n in names)]
    if not missing:
        return None
    return (f"llama.cpp is not built in {cache_root(cache_dir)} and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing to build it; install them (Debian: apt-get install "
            f"cmake g++) or run scripts/build_llamacpp.py on a machine that has them, into the same cache_dir")


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_logged(cmd: list[str], log_path: Path, what: str, progress: bool = False,
               error: type[Exception] = BuildError) -> None:
    """Run a command with its output in `log_path`; ninja's [n/m] lines drive a progress bar. A failure
    raises `error` with one line: what failed, its exit code, its last line and where its log is."""
    bar = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            step = re.match(r"\[(\d+)/(\d+)\]", line)
            if step and progress:
                if bar is None:
                    bar = tqdm(total=int(step.group(2)), desc=what, unit="step")
                bar.n = int(step.group(1))
                bar.refresh()
        code = proc.wait()
    if bar is not None:
        bar.close()
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise error(f"{what} failed (exit {code}): {tail[0][:300]}; full log: {log_path}")


def _fetch_tree(root: Path, progress: bool) -> None:
    """Download the pinned sdist from PyPI and unpack its vendored llama.cpp tree into root/src."""
    sdist_dir = root / "sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    name = f"{SDIST_PACKAGE.replace('-', '_')}-{SDIST_VERSION}"
    archive = sdist_dir / f"{name}.tar.gz"
    if not archive.is_file():
        if progress:
            print(f"llama.cpp: downloading the {SDIST_PACKAGE}=={SDIST_VERSION} source distribution from PyPI",
                  file=sys.stderr)
        run_logged([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                     "--dest", str(sdist_dir), f"{SDIST_PACKAGE}=={SDIST_VERSION}"], root / "download.log",
                    "download", False)
    prefix = f"{name}/vendor/llama.cpp/"
    unpack = root / "src.partial"
    shutil.rmtree(unpack, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(unpack, members=[m for m in members if m.name], filter="data")
    shutil.rmtree(root / "src", ignore_errors=True)
    unpack.rename(root / "src")


def ensure_built(cache_dir: Optional[str | Path] = None, jobs: Optional[int] = None,
                 progress: bool = True) -> LlamaCpp:
    """The built llama.cpp, fetching and building it first when the cache has no finished build."""
    root = cache_root(cache_dir)
    built = find_built(cache_dir)
    if built is not None:
        return built
    with _lock(root):
        built = find_built(cache_dir)  # another process may have finished it while this one waited
        if built is not None:
            return built
        if shutil.which("cmake") is None:
            raise BuildError("cmake not found; install cmake (and a C++ compiler) to build llama.cpp")
        if not (root / "src" / "CMakeLists.txt").is_file():
            _fetch_tree(root, progress)
        if progress:
            print(f"llama.cpp: building {', '.join(TARGETS)} into {root / 'build'} "
                  f"({BUILD_MINUTES_2_CORES} minutes on 2 cores; once per machine)", file=sys.stderr)
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        run_logged(["cmake", "-S", str(root / "src"), "-B", str(root / "build"), *generator, *cmake_flags()],
                    root / "configure.log", "llama.cpp configure", False)
        run_logged(["cmake", "--build", str(root / "build"), "-j", str(jobs or os.cpu_count() or 1),
                     "--target", *TARGETS], root / "build.log", "llama.cpp build", progress)
        (root / "build" / "dlm-bench-build.json").write_text(json.dumps(_stamp(), indent=1))
    built = find_built(cache_dir)
    if built is None:
        raise BuildError(f"the build in {root / 'build'} finished without {', '.join(TARGETS)}")
    return built

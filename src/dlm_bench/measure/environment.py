"""What ran where: hardware, software and job identifiers, captured once per run."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch


def _run(cmd: list[str], cwd: Optional[Path] = None) -> Optional[str]:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_name(device: torch.device) -> str:
    """The name used in cell ids and comparisons: GPU model, or 'cpu: <model>'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_model()}"


def resolve_device(requested: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        from ..config import ConfigError

        raise ConfigError("device: 'cuda' requested but torch sees no GPU here; allowed on this machine: auto, cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@lru_cache(maxsize=None)
def git_commit(root: str | Path) -> Optional[str]:
    """The checkout's short commit hash, with -dirty when tracked files outside results/ have changes (the
    measurements a run writes there do not change what it measures), or None."""
    commit = _run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(root))
    if commit and _run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
                       cwd=Path(root)):
        commit += "-dirty"
    return commit


def capture_environment(device: torch.device, root: Path) -> dict:
    """Flat mapping of environment facts; every key also becomes a CSV column (prefix env_)."""
    import transformers

    env = {
        "hardware": hardware_name(device),
        "device_type": device.type,
        "gpu_name": None, "gpu_count": 0, "gpu_memory_gib": None, "driver_version": None,
        "cuda_version": torch.version.cuda, "cudnn_version": None,
        "sm_clock_max_mhz": None, "power_limit_w": None,
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(root),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu_name=props.name, gpu_count=torch.cuda.device_count(),
                   gpu_memory_gib=round(props.total_memory / 1024 ** 3, 2),
                   cudnn_version=torch.backends.cudnn.version())
        smi = _run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                    "--format=csv,noheader,nounits", f"--id={device.index or 0}"])
        if smi:
            parts = [p.strip() for p in smi.splitlines()[0].split(",")]
            env["driver_version"] = parts[0]
            env["sm_clock_max_mhz"] = parts[1] if len(parts) > 1 else None
            env["power_limit_w"] = parts[2] if len(parts) > 2 else None
    return env

"""Shared fixtures: tiny checkpoints (written once per session) and a mini experiment file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


TIERS = ("unit", "integration", "evidence")  # pytest.ini describes them; CI runs all three


def pytest_collection_modifyitems(items: list) -> None:
    """Every test belongs to one tier: evidence or integration where it is marked so, else unit."""
    for item in items:
        marked = [t for t in TIERS[1:] if item.get_closest_marker(t)]
        if len(marked) > 1:
            raise pytest.UsageError(f"{item.nodeid}: marked {' and '.join(marked)}; a test has one tier")
        if not marked:
            item.add_marker(pytest.mark.unit)


class TierError(RuntimeError):
    """A unit-tier test started a process or a sweep: it belongs in the integration tier."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A unit test runs in-process and sweeps nothing: starting a process or calling the sweep fails it."""
    if not item.get_closest_marker("unit"):
        yield
        return
    import subprocess

    from dlm_bench.sweep import runner

    def refuse(what: str):
        def stop(*args, **kwargs):
            raise TierError(f"{item.nodeid}: a unit test {what}; mark it integration (pytest.ini's tiers)")
        return stop

    saved = subprocess.Popen.__init__, runner.run_experiment
    subprocess.Popen.__init__, runner.run_experiment = refuse("starts a process"), refuse("runs a sweep")
    try:
        yield
    finally:
        subprocess.Popen.__init__, runner.run_experiment = saved


def load_script(name: str) -> ModuleType:
    """A module of scripts/ (`name` without .py), imported from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module

PROMPTS = ROOT / "data" / "prompts" / "mini_prompts.txt"
MASK = 95  # the mask id of the small native model below (vocabulary 96)


def small_llada(seed: int = 0):
    """A small random-init native LLaDA (2 layers, d 32, vocabulary 96, mask 95, EOS 94), in eval mode."""
    import torch

    from dlm_bench.models.llada import LLaDAConfig, LLaDAModelLM

    cfg = LLaDAConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=64, vocab_size=96,
                      embedding_size=96, mask_token_id=MASK, eos_token_id=94, pad_token_id=94)
    model = LLaDAModelLM(cfg)
    model.init_random(generator=torch.Generator().manual_seed(seed))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from dlm_bench.models.tiny import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny"), PROMPTS, seed=0)


def mini_config_dict(tiny_models: dict[str, Path], out: Path) -> dict:
    return {
        "name": "test_mini", "output_dir": str(out / "raw"), "figures_dir": str(out / "fig"),
        "device": "cpu", "precision": "bf16", "attention": "sdpa", "seed": 7,
        "models": [{"name": "tiny-llama", "family": "llama", "path": str(tiny_models["llama"])},
                   {"name": "tiny-llada", "family": "llada", "path": str(tiny_models["llada"])}],
        "grid": {"batch_size": [1, 2], "seq_len": [32], "steps": [4, 8]},
        "diffusion": {"block_length": 8},
        "timing": {"warmup": 1, "repeats": 2},
        "prompts": {"source": "file", "file": str(PROMPTS), "max_prompts": 2},
        "pairs": {"repeats": 6, "warmup": 0},
        "load_guard": {"enabled": False},  # the load guard's own tests switch it on
    }


@pytest.fixture
def mini_config(tiny_models, tmp_path) -> Path:
    """A small valid experiment file over the tiny checkpoints, writing under tmp_path."""
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(mini_config_dict(tiny_models, tmp_path)))
    return path


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path

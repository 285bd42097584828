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

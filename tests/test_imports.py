"""Which part of the package may import which: the folder-level import graph has no cycle, the
measurement never imports the analysis, and the analysis and the pair selection run without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "dlm_bench"
MEASUREMENT = {"sweep", "perf", "measure", "engines", "generation", "models", "quality", "workload", "train"}
TORCH_FREE = ["dlm_bench.analysis.report", "dlm_bench.analysis.figures", "dlm_bench.selection.pairs",
              "dlm_bench.selection.parity", "dlm_bench.stats", "dlm_bench.metrics.timing",
              "dlm_bench.metrics.quality", "dlm_bench.config", "dlm_bench.results", "dlm_bench.analysis.tasks",
              "dlm_bench.tasks.accuracy", "dlm_bench.tasks.outcomes", "dlm_bench.labels", "dlm_bench.paths"]


def _part(path: Path) -> str:
    """The top-level part of the package a file belongs to: its folder, or the module's own name."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def folder_imports() -> dict[str, set[str]]:
    """part -> the other parts it imports (relative imports inside the package, at any depth of the file)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        here = list(path.relative_to(PACKAGE).parent.parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
            target = base + (node.module.split(".") if node.module else [node.names[0].name])
            if target and target[0] != _part(path):
                graph.setdefault(_part(path), set()).add(target[0])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path, or None."""
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_reads_relative_imports_of_every_depth():
    graph = folder_imports()
    assert "results" in graph["measure"]  # measure/memory.py: from ..results import MemoryStats
    assert "selection" in graph["analysis"] and "stats" in graph["config"]


def test_no_folder_level_import_cycle():
    assert _cycle(folder_imports()) is None


def test_the_measurement_never_imports_the_analysis():
    graph = folder_imports()
    assert {part for part in MEASUREMENT if "analysis" in graph.get(part, set())} == set()


@pytest.mark.integration
def test_the_analysis_and_the_pair_selection_import_no_torch():
    code = f"import sys; import {', '.join(TORCH_FREE)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_leaves_import_only_what_the_tour_says():
    graph = folder_imports()
    assert {leaf: graph.get(leaf, set()) for leaf in ("stats", "fileio", "registry", "metrics")} == \
        {"stats": {"metrics"}, "fileio": set(), "registry": set(), "metrics": set()}
    assert graph["paths"] == {"registry"}  # generation paths: checked against the registry's tables alone
    assert graph["labels"] == {"registry", "paths"}  # the human labels: the registry's facts and the paths' labels

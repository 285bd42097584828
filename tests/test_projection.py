"""The 8B projection: every number a band and labelled projected, K* from the linear step cost, the memory
model against the LLaDA paper's LLaMA-3 figures, and GPU rows put beside their projections."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from dlm_bench.analysis import projection
from dlm_bench.analysis.cost_model import Generation, predict_latency
from dlm_bench.analysis.projection import (BF16, PUBLISHED, Band, break_even_steps, device_ceilings, efficiency_at,
                                     measured_beside_projected, paper_grid, project)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def grid():
    return paper_grid(ROOT)


def test_every_factor_is_a_range_with_its_source():
    for path, bounds in PUBLISHED.items():
        for band in (bounds.e_f, bounds.e_b, bounds.overhead_ms):
            assert band.low < band.high, path  # a point would give a projection without a band
        assert len(bounds.basis) > 40


def test_every_projected_number_has_a_band_and_says_projected(grid):
    p = project(grid)
    data = projection.to_json(p)
    assert "PROJECTED" in data["note"]
    assert len(data["latency_ms"]) == 3 * 3 * 3 * (2 + 2 * 3) and len(data["break_even_steps"]) == 3 * 3 * 3 * 2
    for entry in data["latency_ms"] + data["break_even_steps"]:
        assert entry["projected_low"] < entry["projected_high"], entry
    text = projection.markdown(p, None, [])
    assert text.startswith("Every number in this section is **projected**")
    for line in text.splitlines():
        if line.startswith("| H100 | 512 |") or line.startswith("| 512 | 1 |"):
            assert line.count("[") == line.count("]") >= 3, line  # every cell a value with its [low, high]


def test_the_break_even_step_count_is_where_the_linear_step_cost_meets_the_ar_latency(grid, monkeypatch):
    device = device_ceilings("H100")
    n, b = 1024, 1
    n_blocks = (n // 2) // grid.block_length
    k_star = break_even_steps("ar:static_compiled", "diffusion:dual", grid.llama, grid.llada, device, b, n,
                              grid.block_length)

    def diffusion_ms(k, fast):
        gen = Generation("diffusion", "dual", b, n // 2, n // 2, k, grid.block_length)
        return predict_latency(gen, grid.llada, BF16, device, efficiency_at("diffusion:dual", fast)).latency_ms

    for end, ar_fast in ((k_star.low, True), (k_star.high, False)):
        ar = predict_latency(Generation("autoregressive", "static_compiled", b, n // 2, n // 2), grid.llama, BF16,
                             device, efficiency_at("ar:static_compiled", ar_fast)).latency_ms
        one, two, three = (diffusion_ms(m * n_blocks, not ar_fast) for m in (1, 2, 3))
        assert three - two == pytest.approx(two - one)  # linear in K: a whole-canvas step per block + cheap ones
        slope = (two - one) / n_blocks
        assert one + slope * (end - n_blocks) == pytest.approx(ar)
    assert k_star.low < k_star.high


def test_the_memory_model_meets_the_llada_papers_llama3_figures(grid):
    """LLaMA-3-8B with a KV cache, batch 1, A100 (LLaDA paper, appendix B.7): 16.32, 16.41 and 16.74 GB."""
    from dlm_bench.analysis.cost_model import predict_memory

    for (prompt, out), (_, published) in projection.PUBLISHED_MEMORY.items():
        nbytes = predict_memory(Generation("autoregressive", "static", 1, prompt, out), grid.llama, BF16, 0.0).total
        assert nbytes / 1e9 == pytest.approx(published, rel=0.03)


def test_gpu_rows_are_put_beside_their_projections(grid):
    rows = pd.DataFrame([
        {"status": "ok", "hardware": "NVIDIA H100 80GB HBM3", "kind": "autoregressive", "decode": "static_compiled",
         "cache": None, "batch_size": 1, "seq_len": 512, "steps": math.nan, "latency_ms_median": 2000.0},
        {"status": "ok", "hardware": "NVIDIA H100 80GB HBM3", "kind": "diffusion", "decode": None, "cache": "none",
         "batch_size": 1, "seq_len": 512, "steps": 32, "latency_ms_median": 99999.0},
        {"status": "ok", "hardware": "cpu: x", "kind": "diffusion", "decode": None, "cache": "none",
         "batch_size": 1, "seq_len": 512, "steps": 32, "latency_ms_median": 1.0}])
    lines = measured_beside_projected(rows, grid)
    assert len(lines) == 2 + 2  # header, rule, the two H100 rows (the CPU row is no datacenter GPU)
    assert "ar:static_compiled" in lines[2] and "inside the band" in lines[2]
    assert "diffusion:none" in lines[3] and "outside the band" in lines[3]


def test_a_band_prints_its_central_estimate_and_its_ends():
    assert Band(100.0, 400.0, 180.0).text() == "180 [100, 400]" and Band(1.0, 2.5).text(1) == "[1.0, 2.5]"


def test_the_central_estimate_takes_every_factor_at_the_centre_of_its_range_not_a_middle_of_the_ends(grid):
    from dlm_bench.analysis.projection import CENTRAL, FAVOURABLE, UNFAVOURABLE, factor_value

    # e_f of the compiled AR path is 0.30-0.69: its centre is 0.495; a higher share is the favourable end
    assert factor_value("ar:static_compiled", "e_f", CENTRAL) == pytest.approx(0.495)
    assert factor_value("ar:static_compiled", "e_f", FAVOURABLE) == 0.69
    # the overhead c of the eager path is 7-12 ms: favourable is the low end
    assert factor_value("ar:eager", "c", FAVOURABLE) == 7.0 and factor_value("ar:eager", "c", UNFAVOURABLE) == 12.0
    device = device_ceilings("H100")
    be = break_even_steps("ar:static_compiled", "diffusion:dual", grid.llama, grid.llada, device, 1, 1024,
                          grid.block_length)
    assert be.low < be.central < be.high
    # the central estimate is the K* of the central factors, which is not the geometric middle of the two ends
    assert be.central != pytest.approx(math.sqrt(be.low * be.high), rel=1e-3)
    latency = projection.projected_latency_ms("ar:eager", grid.llama, device, 1, 1024)
    central = predict_latency(Generation("autoregressive", "eager", 1, 512, 512), grid.llama, BF16, device,
                              projection.efficiency_of("ar:eager", {})).latency_ms
    assert latency.central == pytest.approx(central)
    assert latency.low < latency.central < latency.high


def test_a_band_that_spans_every_k_is_undetermined_and_one_below_every_k_is_none():
    from dlm_bench.analysis.projection import BreakEven, k_star_text

    n_out, n_blocks = 512, 16
    assert k_star_text(BreakEven(10.0, 600.0, 90.0), n_out, n_blocks) == "undetermined [<16, 600]"
    assert k_star_text(BreakEven(-5.0, 12.0, 3.0), n_out, n_blocks) == "none: even K = 16 is slower [<16, <16]"
    # inside: the central estimate as steps and as a share of N_out, the band's ends (raised to one step per
    # block) as shares
    assert k_star_text(BreakEven(64.0, 256.0, 128.0), n_out, n_blocks) == "128 (0.25 N_out) [64, 256] (0.12–0.50 N_out)"
    assert k_star_text(BreakEven(8.0, 256.0, 12.0), n_out, n_blocks) == "<16 [<16, 256] (0.03–0.50 N_out)"


def test_the_sensitivity_names_the_factor_that_moves_k_star_most(grid):
    from dlm_bench.analysis.projection import FACTORS, k_star, efficiency_of, sensitivity

    device = device_ceilings("H100")
    swings = sensitivity("ar:static_compiled", "diffusion:dual", grid.llama, grid.llada, device, 1, 1024,
                         grid.block_length)
    assert len(swings) == 2 * len(FACTORS) and [s.size for s in swings] == sorted((s.size for s in swings),
                                                                                  reverse=True)
    top = swings[0]
    # by hand: K* with only that factor moved to its favourable end, everything else central
    args = ("ar:static_compiled", "diffusion:dual", grid.llama, grid.llada, device, 1, 1024, grid.block_length)
    moved = efficiency_of(top.path, {top.factor: "favourable"})
    ar_eff = moved if top.path.startswith("ar") else efficiency_of("ar:static_compiled", {})
    dl_eff = moved if top.path.startswith("diffusion") else efficiency_of("diffusion:dual", {})
    assert k_star(*args, ar_eff, dl_eff) == pytest.approx(top.at_favourable)


@pytest.mark.integration
def test_the_projection_script_writes_its_files_and_the_paper_section(tmp_path):
    import shutil
    import subprocess
    import sys

    paper = tmp_path / "paper.md"
    shutil.copy(ROOT / "paper.md", paper)
    out = subprocess.run([sys.executable, "scripts/project_8b.py", "--output", str(tmp_path / "projection"),
                          "--figure", str(tmp_path / "break_even.png"), "--paper", str(paper)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "projection" / "projection.json").read_text())["note"].startswith("PROJECTED")
    assert (tmp_path / "break_even.png").stat().st_size > 10_000
    assert "projected" in paper.read_text().split("<!-- BEGIN GENERATED: projected -->")[1].split(
        "<!-- END GENERATED: projected -->")[0]

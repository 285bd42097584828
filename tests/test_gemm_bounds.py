"""The GPU ceilings' shape: which side of the ridge a published GEMM sits on, the shares read from them, the tile a
matmul of few rows pays for, and the projection's favourable ends taken from them."""

from pathlib import Path

import pytest

from dlm_bench.analysis import gemm_bounds
from dlm_bench.analysis.cost_model import Ceilings, forward_costs
from dlm_bench.analysis.gemm_bounds import GemmMeasurement, bandwidth_shares, compute_shares, tile_fill
from dlm_bench.analysis.projection import E_B, E_F_TOP, PUBLISHED, device_ceilings, paper_grid
from dlm_bench.generation import ForwardWork

pytestmark = pytest.mark.unit


def test_a_gemm_is_memory_bound_below_the_ridge_by_its_own_flops_and_bytes():
    # 64 x 2112 x 7168 in FP8 with a BF16 output: 2*64*2112*7168 = 1,937,768,448 FLOPs over
    # 64*7168 + 2112*7168 + 2*64*2112 = 15,867,904 bytes = 122.1 FLOP/byte, under 1979 / 3.35 = 590.7
    small = GemmMeasurement(64, 2112, 7168, 206, 1688)
    assert small.intensity == pytest.approx(1_937_768_448 / 15_867_904) and small.memory_bound
    assert small.bandwidth_share == pytest.approx(1688 / 3350)
    # 4096 x 7168 x 2048: 120,259,084,288 FLOPs over 8,388,608 + 14,680,064 + 58,720,256 bytes = 1470.3
    large = GemmMeasurement(4096, 7168, 2048, 1025, 697)
    assert large.intensity == pytest.approx(120_259_084_288 / 81_788_928) and not large.memory_bound
    assert large.compute_share == pytest.approx(1025 / 1979)


def test_the_shares_read_only_shapes_like_an_8b_models_on_their_side_of_the_ridge():
    shapes = (GemmMeasurement(64, 4096, 7168, 287, 2320), GemmMeasurement(128, 4096, 7168, 533, 2221),
              GemmMeasurement(64, 32768, 512, 219, 2143),  # K = 512: not read
              GemmMeasurement(4096, 4096, 7168, 1304, 500), GemmMeasurement(4096, 32768, 512, 590, 1232))
    bandwidth = bandwidth_shares(shapes)
    assert (bandwidth.low, bandwidth.high, bandwidth.shapes) == (pytest.approx(2221 / 3350), pytest.approx(2320 / 3350), 2)
    assert bandwidth.median == pytest.approx((2221 + 2320) / 2 / 3350)
    compute = compute_shares(shapes)
    assert (compute.low, compute.high, compute.shapes) == (pytest.approx(1304 / 1979), pytest.approx(1304 / 1979), 1)


def test_the_published_table_gives_the_projections_favourable_ends():
    # the eight memory-bound shapes with K >= 2048 streamed at 1509 to 2668 GB/s of 3350; the four compute-bound
    # ones reached 1025 to 1358 TFLOP/s of 1979
    assert (E_B.low, E_B.high) == (round(1509 / 3350, 2), round(2668 / 3350, 2)) == (0.45, 0.8)
    assert E_F_TOP == round(1358 / 1979, 2) == 0.69
    assert len(gemm_bounds.DEEPGEMM_H800) == 18
    for path, bounds in PUBLISHED.items():
        assert bounds.e_b == E_B and bounds.e_f.high == E_F_TOP, path


def test_a_matmul_of_fewer_rows_than_a_tile_pays_for_the_whole_tile():
    assert [tile_fill(r) for r in (1, 32, 64, 100, 128, 256)] == [1 / 64, 0.5, 1.0, 100 / 128, 1.0, 1.0]
    gpu = Ceilings("gpu", 1000.0, 2.0, "test", tile_rows=64)
    assert gpu.tflops_at(4096, 32) == 500.0 and gpu.tflops_at(4096, 8) == 125.0 and gpu.tflops_at(4096, 640) == 1000.0
    assert Ceilings("cpu", 1000.0, 2.0, "test").tflops_at(4096, 32) == 1000.0  # no tiles: the one peak


def test_a_cached_block_of_one_sequence_on_an_h100_stays_bound_by_its_bytes_with_the_tile_it_pays_for():
    llada = paper_grid(Path(__file__).resolve().parent.parent).llada
    h100 = device_ceilings("H100")
    # a dual-cached step of one 32-token block on a canvas of 512: 32 queries over 512 keys, 480 of them cached
    block = ForwardWork(batch=1, query_tokens=32, attention_pairs=32 * 512, logits_tokens=32, cached_tokens=480)
    (cost,) = forward_costs([block], llada, 2, h100, E_F_TOP, E_B.high)
    # 32 rows compute half a 64-row tile: the compute term at half the peak, still under the bytes term
    assert cost.compute_ms == pytest.approx(1e3 * cost.flops / (E_F_TOP * 989e12 * 0.5))
    assert cost.compute_ms < cost.memory_ms

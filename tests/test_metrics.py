import math

import pytest

from dlm_bench.metrics import timing as metrics


def test_throughput_and_passes():
    # B=8, N_out=512 tokens in 2 s -> 2048 tokens/s
    assert metrics.throughput_tokens_per_s(8, 512, 2000.0) == pytest.approx(2048.0)
    assert metrics.forward_passes_per_token(64, 256) == 0.25


def test_ttft_and_itl_from_token_offsets():
    offsets = [40.0, 50.0, 61.0, 70.0]  # first token after 40 ms, then 10, 11, 9 ms gaps
    assert metrics.ttft_ms(offsets) == 40.0
    assert metrics.mean_itl_ms(offsets) == pytest.approx(10.0)
    assert math.isnan(metrics.mean_itl_ms([5.0]))


def test_step_latencies_and_percentiles():
    steps = metrics.step_latencies_ms([2.0, 5.0, 9.0, 10.0])
    assert steps == [2.0, 3.0, 4.0, 1.0]
    assert metrics.percentile(steps, 50) == pytest.approx(2.5)
    assert metrics.percentile(steps, 100) == 4.0
    assert metrics.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99) == pytest.approx(4.96)
    assert math.isnan(metrics.percentile([], 50))


def test_median_and_cv():
    assert metrics.median([3.0, 1.0, 2.0]) == 2.0
    assert metrics.coefficient_of_variation([10.0, 10.0, 10.0]) == 0.0
    assert metrics.coefficient_of_variation([9.0, 11.0]) == pytest.approx(math.sqrt(2) / 10)
    assert metrics.coefficient_of_variation([5.0]) == 0.0


def test_answer_tokens_stop_at_the_first_eos():
    assert metrics.answer_tokens([[5, 6, 2, 7, 2], [5, 6, 7], [2, 2]], eos_id=2) == [2, 3, 0]
    assert metrics.answer_tokens([[1, 2]], eos_id=None) == [2]

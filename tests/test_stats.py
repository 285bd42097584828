"""The one statistics module: its bootstrap against draws worked out from the standard library's random
stream, its three-outcome verdict on hand-made intervals, and the configured resample count reaching
every interval of the analysis."""

import math
import random

import pandas as pd
import pytest

from dlm_bench.selection.pairs import paired_ratio
from dlm_bench.analysis.steps_trend import steps_trends
from dlm_bench.quality.trend import paired_difference, rank_correlation
from dlm_bench.stats import FAIL, PASS, UNDECIDED, bootstrap, bootstrap_mean, verdict


def _draws_by_hand(n: int, resamples: int, seed: int) -> list[list[int]]:
    """The index draws of `bootstrap`: each index is floor(random() * n) of random.Random(seed), in order."""
    rng = random.Random(seed)
    return [[int(rng.random() * n) for _ in range(n)] for _ in range(resamples)]


def test_the_bootstrap_percentiles_are_those_of_the_statistic_over_the_drawn_indices():
    values = [0.0, 10.0, 30.0]
    means = sorted(sum(values[i] for i in idx) / 3 for idx in _draws_by_hand(3, 40, seed=5))
    est = bootstrap_mean(values, resamples=40, seed=5)
    # 40 draws: the 2.5th percentile is the sorted draw at index int(1.0) = 1, the 97.5th at int(39.0) = 39
    assert est.value == pytest.approx(40.0 / 3)
    assert (est.ci_low, est.ci_high) == (pytest.approx(means[1]), pytest.approx(means[39]))


def test_every_interval_of_the_project_comes_from_the_same_draws():
    ref, con = [30.0, 20.0, 60.0, 10.0], [10.0, 10.0, 20.0, 10.0]  # per-pair ratios 3, 2, 3, 1
    ratios = [3.0, 2.0, 3.0, 1.0]
    medians = []
    for idx in _draws_by_hand(4, 100, seed=0):
        drawn = sorted(ratios[i] for i in idx)
        medians.append((drawn[1] + drawn[2]) / 2)  # the median of four values
    medians.sort()
    est = paired_ratio(ref, con, resamples=100)
    assert est.value == 2.5 and (est.ci_low, est.ci_high) == (medians[2], medians[97])
    diff = paired_difference([1.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0, 1.0], resamples=100)
    assert diff == bootstrap_mean([0.0, 1.0, 3.0, 7.0], resamples=100)


def test_a_bootstrap_of_nothing_or_of_one_item():
    assert all(math.isnan(v) for v in (bootstrap(0, lambda idx: 1.0).value, bootstrap_mean([None, math.nan]).ci_low))
    one = bootstrap_mean([4.0], resamples=10)
    assert (one.value, one.ci_low, one.ci_high) == (4.0, 4.0, 4.0)


def test_a_statistic_undefined_on_every_draw_gives_no_interval():
    # the mean score is the same at both settings in every resample, so rho is undefined everywhere
    est = rank_correlation({1: [0.0, 1.0], 2: [0.0, 1.0]}, resamples=20)
    assert math.isnan(est.value) and math.isnan(est.ci_low) and math.isnan(est.ci_high)


@pytest.mark.parametrize("low, high, bound, higher, bound_passes, outcome", [
    (1.1, 1.3, 1.0, True, True, PASS),
    (1.0, 1.3, 1.0, True, True, PASS),  # at least 1.0: the bound itself passes
    (1.0, 1.3, 1.0, True, False, UNDECIDED),  # strictly faster: an end on 1.0 does not decide
    (0.7, 0.9, 1.0, True, True, FAIL),
    (0.9, 1.2, 1.0, True, True, UNDECIDED),
    (0.01, 0.04, 0.05, False, True, PASS),  # at most 0.05
    (0.02, 0.05, 0.05, False, True, PASS),
    (0.06, 0.09, 0.05, False, True, FAIL),
    (0.03, 0.07, 0.05, False, True, UNDECIDED),
    (math.nan, 1.2, 1.0, True, True, None),
])
def test_the_verdict_has_three_outcomes(low, high, bound, higher, bound_passes, outcome):
    assert verdict(low, high, bound, higher, bound_passes) == outcome


def test_the_analysis_uses_the_resample_count_it_is_given():
    rows = pd.DataFrame([{"cell_id": c, "status": "ok", "kind": "diffusion", "model_name": "mdm", "family": "llada",
                          "seq_len": 64, "batch_size": 1, "steps": k, "sampler": "random", "cache": "none",
                          "schedule": "llada"} for c, k in (("k4", 4), ("k8", 8))])
    # two settings, so rho is +1 or -1 per resample (or undefined when the means tie); prompt a rises, b falls
    scores = {"k4": [("a", 0.1), ("b", 0.9), ("c", 0.5)], "k8": [("a", 0.4), ("b", 0.3), ("c", 0.6)]}
    quality = {cid: {"per_prompt": [{"passage_id": p, "bertscore_f1": f} for p, f in s]} for cid, s in scores.items()}
    one = next(t for t in steps_trends(rows, quality, resamples=1) if t.metric == "bertscore_f1").correlation
    many = next(t for t in steps_trends(rows, quality, resamples=400) if t.metric == "bertscore_f1").correlation
    assert one.ci_low == one.ci_high  # a single draw: a point interval
    assert many.ci_low == -1.0 and many.ci_high == 1.0


@pytest.mark.parametrize("above, below, p_value", [
    (8, 0, 2 / 2 ** 8),                      # every pair on one side: 2 * (1/2)^8
    (0, 6, 2 / 2 ** 6),
    (7, 1, 2 * (1 + 8) / 2 ** 8),            # P(X <= 1) for X ~ Bin(8, 1/2), both tails
    (3, 0, 0.25), (5, 5, 1.0), (0, 0, 1.0),
    (10, 2, 2 * (1 + 12 + 66) / 2 ** 12),
])
def test_the_sign_test_against_hand_computed_binomial_tails(above, below, p_value):
    from dlm_bench.stats import sign_test

    assert sign_test(above, below) == pytest.approx(p_value)


def test_a_ratio_test_keeps_direction_and_magnitude_apart():
    from dlm_bench.stats import FAIL, PASS, UNDECIDED, paired_ratio_test

    # 8 pairs, all slower for the contender but spread widely: a clear direction, an imprecise magnitude
    spread = paired_ratio_test([10.0] * 8, [12.0, 20.0, 14.0, 30.0, 11.0, 25.0, 16.0, 40.0], resamples=200)
    assert (spread.above, spread.below, spread.direction) == (0, 8, FAIL)
    assert spread.p_value == pytest.approx(2 / 256) and not spread.precise
    # ratios exactly 2 and 2.02 alternating: precise, and above 1 in every pair
    steady = paired_ratio_test([20.0, 20.2] * 4, [10.0] * 8, resamples=200)
    assert steady.direction == PASS and steady.precise and steady.cv < 0.01
    # half above, half below 1: no direction, however tight
    mixed = paired_ratio_test([10.1, 9.9] * 4, [10.0] * 8, resamples=200)
    assert mixed.direction == UNDECIDED and mixed.p_value == 1.0

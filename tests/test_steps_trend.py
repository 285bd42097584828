"""The 'Quality against K' table: Spearman's rho between K and the mean per-prompt score, read from
quality_metrics.json, checked against values worked out by hand."""

import pandas as pd
import pytest

from dlm_bench.analysis.steps_trend import NO_TREND, best_k, reading, steps_trend_markdown, steps_trends


def _rows(cells):
    """Diffusion rows from (cell_id, sampler, cache, K, B)."""
    return pd.DataFrame([{"cell_id": cid, "status": "ok", "kind": "diffusion", "model_name": "mdm", "family": "llada",
                          "seq_len": 64, "batch_size": b, "steps": k, "sampler": sampler, "cache": cache,
                          "schedule": "llada"} for cid, sampler, cache, k, b in cells])


def _scored(**per_cell):
    """quality_metrics.json entries: cell id -> list of (passage id, bertscore_f1, gen_ppl)."""
    return {cid: {"per_prompt": [{"passage_id": p, "bertscore_f1": f1, "gen_ppl": ppl} for p, f1, ppl in prompts]}
            for cid, prompts in per_cell.items()}


def test_every_prompt_better_at_more_steps_gives_rho_one_with_a_point_interval():
    rows = _rows([("k4", "random", "none", 4, 1), ("k16", "random", "none", 16, 1), ("k32", "random", "none", 32, 1)])
    # each prompt's F1 rises and its perplexity falls with K, so every resample of prompts has the same order
    quality = _scored(k4=[("a", 0.1, 90.0), ("b", 0.2, 80.0)], k16=[("a", 0.3, 50.0), ("b", 0.4, 40.0)],
                      k32=[("a", 0.5, 10.0), ("b", 0.6, 20.0)])
    trends = {t.metric: t for t in steps_trends(rows, quality)}
    f1, ppl = trends["bertscore_f1"], trends["gen_ppl"]
    assert f1.means == pytest.approx({4: 0.15, 16: 0.35, 32: 0.55})
    assert (f1.correlation.value, f1.correlation.ci_low, f1.correlation.ci_high) == (1.0, 1.0, 1.0)
    assert (ppl.correlation.value, ppl.correlation.ci_low, ppl.correlation.ci_high) == (-1.0, -1.0, -1.0)
    assert reading(f1) == reading(ppl) == "improves"  # perplexity: lower is better
    assert best_k(f1) == best_k(ppl) == 32 and f1.prompts == 2


def test_a_hump_reads_as_no_trend_when_prompts_disagree_and_names_its_best_k():
    rows = _rows([("k4", "random", "none", 4, 1), ("k16", "random", "none", 16, 1), ("k32", "random", "none", 32, 1)])
    # prompt a rises with K, prompt b falls: the means 0.5, 0.6, 0.5 have ranks 1.5, 3, 1.5, so rho = 0 by hand;
    # resampling a twice gives +1 and b twice gives -1, so the interval spans 0
    quality = _scored(k4=[("a", 0.2, 1.0), ("b", 0.8, 1.0)], k16=[("a", 0.5, 1.0), ("b", 0.7, 1.0)],
                      k32=[("a", 0.9, 1.0), ("b", 0.1, 1.0)])
    f1 = next(t for t in steps_trends(rows, quality) if t.metric == "bertscore_f1")
    assert f1.correlation.value == 0.0
    assert f1.correlation.ci_low == -1.0 and f1.correlation.ci_high == 1.0
    assert reading(f1) == NO_TREND and best_k(f1) == 16


def test_scores_pair_by_passage_and_come_from_the_smallest_batch():
    # the B = 8 cell's scores must be ignored; passage c is scored at one K only and is left out
    rows = _rows([("k4", "random", "none", 4, 1), ("k4b8", "random", "none", 4, 8), ("k16", "random", "none", 16, 1)])
    quality = _scored(k4=[("b", 0.4, 5.0), ("a", 0.2, 5.0)], k4b8=[("a", 0.9, 5.0), ("b", 0.9, 5.0)],
                      k16=[("a", 0.1, 5.0), ("b", 0.3, 5.0), ("c", 0.99, 5.0)])
    f1 = next(t for t in steps_trends(rows, quality) if t.metric == "bertscore_f1")
    assert f1.means == pytest.approx({4: 0.3, 16: 0.2}) and f1.prompts == 2
    assert reading(f1) == "worsens"


def test_the_summary_table_shows_uncached_paths_only_and_skips_unscored_metrics():
    rows = _rows([("a4", "random", "none", 4, 1), ("a16", "random", "none", 16, 1),
                  ("c4", "random", "dual", 4, 1), ("c16", "random", "dual", 16, 1)])
    quality = {cid: {"per_prompt": [{"passage_id": "p", "bertscore_f1": f1, "distinct_2": d2},
                                     {"passage_id": "q", "bertscore_f1": f1 + 0.1, "distinct_2": d2 - 0.2}]}
               for cid, f1, d2 in (("a4", 0.1, 1.0), ("a16", 0.3, 0.5), ("c4", 0.1, 1.0), ("c16", 0.3, 0.5))}
    text = steps_trend_markdown(rows, quality)
    assert "random/none" in text and "random/dual" not in text and "gen_ppl" not in text
    assert ("| mdm | 64 | random/none | bertscore_f1 | 4: 0.15; 16: 0.35 | 1.00 [1.00, 1.00] | improves | 16 "
            "| 4: 0.90; 16: 0.40 | 2 |") in text
    assert steps_trend_markdown(rows, {}).startswith("_No diffusion path")

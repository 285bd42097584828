"""The trained pair's code: corpus preparation, objectives, export, and a micro training run."""

import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

from conftest import PROMPTS, small_llada
from dlm_bench.models.llada import LLaDAConfig, LLaDAModelLM
from dlm_bench.train import corpus
from dlm_bench.train.pair import (Budget, TrainSettings, as_shipped, heldout_bits_per_char, heldout_chunks, initial_model,
                            llada_config, mdm_loss, save_ar, save_mdm, to_llama, train, weights_from_ar, windows)

SMALL = small_llada().config


def test_paragraphs_skip_the_title_block_and_headings_and_passages_reach_their_length():
    lines = ["EMMA", "", "By Jane Austen", "", "VOLUME I", "", "CHAPTER I", "",
             "Emma Woodhouse, handsome, clever, and rich, with a", "comfortable home.", "",
             "She was the youngest of the two daughters of a most affectionate father.", "", "CHAPTER II", "",
             "Mr. Weston was a native of Highbury, and born of a respectable family."]
    paras = corpus.paragraphs(lines)
    assert paras == ["Emma Woodhouse, handsome, clever, and rich, with a comfortable home.",
                     "She was the youngest of the two daughters of a most affectionate father.",
                     "Mr. Weston was a native of Highbury, and born of a respectable family."]
    joined = corpus.passages(paras, min_chars=100)
    assert joined == [paras[0] + " " + paras[1]]  # (68 + 1) + (72 + 1) >= 100; the last, alone 71 < 100, is dropped


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt and dpkg")
def test_the_debian_package_gives_six_novels(tmp_path):
    try:
        deb = corpus.download_deb(tmp_path)
    except corpus.CorpusError as exc:
        pytest.skip(f"package not downloadable here: {exc}")
    novels = corpus.read_novels(deb)
    assert set(novels) == set(corpus.NOVELS)
    persuasion = " ".join(corpus.paragraphs(novels["persuasion"]))
    assert persuasion.startswith("Sir Walter Elliot, of Kellynch Hall") and len(persuasion) > 400_000


def test_mdm_loss_is_the_masked_cross_entropy_over_t_by_hand():
    model = LLaDAModelLM(SMALL)
    model.init_random(generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.5, 0.25])
    loss = mdm_loss(model, ids, 95, 1e-3, torch.Generator().manual_seed(7), t=t)
    # the same by hand: the masking draws, the masked canvas, CE per masked position divided by its row's t
    masked = torch.rand(2, 6, generator=torch.Generator().manual_seed(7)) < t[:, None]
    logits = model(torch.where(masked, torch.full_like(ids, 95), ids)).logits
    total = sum(F.cross_entropy(logits[b, i], ids[b, i]).item() / t[b].item()
                for b in range(2) for i in range(6) if masked[b, i])
    assert float(loss) == pytest.approx(total / 12, rel=1e-5)


def test_the_causal_twin_exports_to_llama_with_the_same_logits():
    model = initial_model(SMALL, seed=3)
    ids = torch.randint(0, 90, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        native = model(ids, causal=True).logits
        llama = to_llama(model, bos_id=93)(ids).logits
    torch.testing.assert_close(llama, native, atol=1e-5, rtol=1e-5)
    # and it is causal: a later token leaves earlier logits alone
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 90
    with torch.no_grad():
        assert torch.equal(model(changed, causal=True).logits[:, :-1], native[:, :-1])


def test_both_runs_see_the_same_windows_in_the_same_order():
    tokens = torch.arange(1000)
    s = TrainSettings(context=8, batch=4, budget=Budget(seed=5))
    assert torch.equal(windows(tokens, s, 3), windows(tokens, s, 6)[:3])  # the MDM's longer run starts the same


@pytest.mark.integration
def test_micro_pair_trains_saves_and_loads_through_the_project_loader(tmp_path):
    from dlm_bench.config import ModelSpec
    from dlm_bench.paths import DiffusionPath
    from dlm_bench.generation.diffusion import MaskedDiffusionGenerator, SamplerSettings
    from dlm_bench.models.loader import LoadSettings, load_model
    from dlm_bench.models.tiny import read_corpus, train_tokenizer
    from dlm_bench.train.pair import SPECIALS

    torch.manual_seed(0)
    lines = read_corpus(PROMPTS)
    tok = train_tokenizer(lines, SPECIALS, 300)
    mask_id = tok.convert_tokens_to_ids(SPECIALS["mask"])
    ids = torch.tensor(tok("\n".join(lines * 3), add_special_tokens=False)["input_ids"])
    s = TrainSettings(context=32, batch=8, lr=1e-2, warmup_steps=5, budget=Budget(60 * 8 * 32, 60 * 8 * 32),
                      eval_windows=4, elbo_samples=8,
                      model=LLaDAConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=64,
                                        vocab_size=320, embedding_size=320))
    cfg = llada_config(s, mask_id, tok.eos_token_id)
    chars = lambda x: len(tok.decode(x))  # noqa: E731
    for kind in ("ar", "mdm"):
        model = initial_model(cfg, s.budget.seed)
        chunks = heldout_chunks(ids, s)
        untrained = heldout_bits_per_char(kind, model, chunks, chars, s, mask_id)
        train(kind, model, ids, s, mask_id, progress=False, log_every=10)
        trained = heldout_bits_per_char(kind, as_shipped(model), chunks, chars, s, mask_id)
        assert 0 < trained < 0.8 * untrained, (kind, untrained, trained)  # it learns (same windows, same t draws)
        folder = (save_ar if kind == "ar" else lambda m, t, o: save_mdm(m, t, o, {}))(model, tok, tmp_path / kind)
        family = "llama" if kind == "ar" else "llada"
        loaded = load_model(ModelSpec(kind, family, path=str(folder)), torch.device("cpu"),
                            LoadSettings("fp32", "sdpa", 0, tmp_path))
        assert loaded.weights == "pretrained" and loaded.tokenizer.convert_tokens_to_ids(SPECIALS["mask"]) == mask_id
        prompt = ids[:16][None]
        with torch.no_grad():
            if kind == "ar":  # the saved checkpoint computes what the trained model computes (bf16-rounded)
                torch.testing.assert_close(loaded.model(prompt).logits, model(prompt, causal=True).logits,
                                           atol=1e-4, rtol=1e-4)
            else:
                torch.testing.assert_close(loaded.model(prompt).logits, model(prompt).logits, atol=1e-4, rtol=1e-4)
                out = MaskedDiffusionGenerator(loaded.model, mask_id, DiffusionPath("low_confidence"),
                                               SamplerSettings(8)).generate(prompt, 16, steps=4).output_ids
                assert out.shape == (1, 16) and not (out == mask_id).any()


@pytest.mark.integration
def test_train_pair_script_refuses_a_missing_package_with_exit_2(tmp_path):
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, "scripts/train_pair.py", "--data_dir", str(tmp_path / "data"),
                          "--deb", str(tmp_path / "missing.deb"), "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "corpus error:" in out.stderr and "missing.deb" in out.stderr


def test_the_same_seed_trains_the_same_model():
    ids = torch.randint(0, 90, (4000,), generator=torch.Generator().manual_seed(0))
    s = TrainSettings(context=16, batch=4, warmup_steps=2, budget=Budget(8 * 4 * 16, 8 * 4 * 16), model=SMALL)
    cfg = llada_config(s, 95, 94)
    for kind in ("ar", "mdm"):
        a, b = initial_model(cfg, s.budget.seed), initial_model(cfg, s.budget.seed)
        curves = [train(kind, m, ids, s, 95, progress=False, log_every=1).curve for m in (a, b)]
        assert curves[0] == curves[1]
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_mdm_starts_from_the_saved_ar_twin(tmp_path):
    from dlm_bench.models.tiny import read_corpus, train_tokenizer
    from dlm_bench.train.pair import SPECIALS

    tok = train_tokenizer(read_corpus(PROMPTS), SPECIALS, 300)
    cfg = LLaDAConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=64, vocab_size=320,
                      embedding_size=320, mask_token_id=tok.convert_tokens_to_ids(SPECIALS["mask"]),
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    ar = as_shipped(initial_model(cfg, seed=4))
    save_ar(ar, tok, tmp_path / "ar")
    start = weights_from_ar(tmp_path / "ar", cfg)
    # every tensor as the AR model holds it after rounding to bf16 (the saved weights)
    assert all(torch.equal(a, b) for a, b in zip(ar.state_dict().values(), start.state_dict().values()))
    with pytest.raises(ValueError, match="budget.mdm_start: 'warm' is not one of ar, scratch"):
        Budget(mdm_start="warm")


@pytest.mark.integration
def test_train_pair_script_refuses_an_mdm_from_a_missing_ar_twin(tmp_path):
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, "scripts/train_pair.py", "--data_dir", str(tmp_path / "data"), "--out",
                          str(tmp_path / "out"), "--only", "mdm"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "the MDM starts from the AR twin" in out.stderr and "--mdm_start scratch" in out.stderr
    assert not (tmp_path / "data").exists()  # refused before the corpus is prepared

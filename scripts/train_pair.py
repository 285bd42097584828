"""Train the matched AR / masked-diffusion pair on Jane Austen (offline, CPU) and write the checkpoints.

    python scripts/train_pair.py                       # corpus (if missing), tokenizer, both models
    python scripts/train_pair.py --out /tmp/pair --ar_tokens 20000 --mdm_tokens 40000   # a quick run

Writes <out>/ar (LlamaForCausalLM), <out>/mdm (LLaDA layout), each with the shared tokenizer and a
training card (training_card.json, TRAINING_CARD.md), and <out>/training_curves.png. The corpus is
prepared into data/austen/ (ignored by git) from Debian's r-cran-janeaustenr package.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch

from dlm_bench.measure.environment import cpu_model
from dlm_bench.models.tiny import train_tokenizer
from dlm_bench.train import corpus as austen
from dlm_bench.train.pair import (MDM_STARTS, SPECIALS, Budget, TrainSettings, as_shipped, card, card_markdown, heldout_bits_per_char,
                            heldout_chunks, initial_model, llada_config, save_ar, save_mdm, train, weights_from_ar)


ARCHITECTURE_FLAGS = ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "vocab_size")


def prepare_corpus(data_dir: Path, deb: Path | None) -> dict:
    """The prepared corpus's summary, preparing it first when it is missing (as scripts/prepare_austen.py)."""
    summary_path = data_dir / "corpus.json"
    if summary_path.is_file() and (data_dir / "train.txt").is_file():
        return json.loads(summary_path.read_text())
    summary = austen.prepare(deb or austen.download_deb(data_dir / "deb"), data_dir)
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def curves_figure(out: Path) -> Path:
    """Both training curves, from the cards in <out>/ar and <out>/mdm (whichever exist)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    styles = {"ar": ("#0072B2", "AR: next-token cross-entropy", "NLL"),
              "mdm": ("#D55E00", "MDM: masked cross-entropy / t (LLaDA)", "ELBO bound")}
    for kind, (color, label, metric) in styles.items():
        path = out / kind / "training_card.json"
        if not path.is_file():
            continue
        c = json.loads(path.read_text())
        offset = c.get("tokens_seen_with_start", c["tokens_seen"]) - c["tokens_seen"]  # an MDM that starts from the AR
        xs, ys = zip(*c["curve"])
        start = " from the AR weights" if offset else ""
        ax.plot([(x + offset) / 1e6 for x in xs], ys, color=color,
                label=f"{label}: {c['tokens_seen'] / 1e6:.1f} M tokens{start};\n"
                      f"held-out {c['heldout_bits_per_char']:.2f} bits/char ({metric})")
    ax.set(xlabel="training tokens seen, millions (the MDM continues the AR run)",
           ylabel="training loss, nats per token", title="The Austen pair: one architecture, seed and data order")
    ax.legend(fontsize=8, loc="upper right")
    fig.savefig(out / "training_curves.png", dpi=150)
    plt.close(fig)
    return out / "training_curves.png"


def main() -> int:
    defaults = TrainSettings()
    groups = {"settings": defaults, "budget": defaults.budget, "model": defaults.model}
    flags = {"settings": [f.name for f in dataclasses.fields(TrainSettings) if f.name not in ("budget", "model")],
             "budget": [f.name for f in dataclasses.fields(Budget)], "model": list(ARCHITECTURE_FLAGS)}
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="checkpoints/austen", help="folder for ar/, mdm/ and the curves")
    p.add_argument("--data_dir", default="data/austen", help="prepared corpus (written when missing)")
    p.add_argument("--deb", type=Path, help="a downloaded r-cran-janeaustenr .deb (default: apt-get download)")
    for group, names in flags.items():
        for name in names:
            default = getattr(groups[group], name)
            choices = MDM_STARTS if name == "mdm_start" else None
            p.add_argument(f"--{name}", type=type(default), default=default, choices=choices)
    p.add_argument("--only", choices=["ar", "mdm"], help="train one of the two")
    args = p.parse_args()
    pick = lambda group: {n: getattr(args, n) for n in flags[group]}  # noqa: E731
    model = dataclasses.replace(defaults.model, **pick("model"), n_kv_heads=args.n_heads, embedding_size=args.vocab_size)
    s = TrainSettings(**pick("settings"), budget=Budget(**pick("budget")), model=model)
    torch.set_num_threads(s.budget.threads)
    data_dir, out = ROOT / args.data_dir, ROOT / args.out
    if args.only == "mdm" and s.budget.mdm_start == "ar" and not (out / "ar" / "model.safetensors").is_file():
        print(f"the MDM starts from the AR twin, but {out / 'ar'} has no checkpoint: train it first (without --only) "
              "or pass --mdm_start scratch", file=sys.stderr)
        return 2
    try:
        corpus = prepare_corpus(data_dir, args.deb)
    except austen.CorpusError as exc:
        print(f"corpus error: {exc}", file=sys.stderr)
        return 2
    train_lines = (data_dir / "train.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = train_tokenizer(train_lines, SPECIALS, s.model.vocab_size)
    mask_id = tokenizer.convert_tokens_to_ids(SPECIALS["mask"])
    train_ids = torch.tensor(tokenizer("\n".join(train_lines), add_special_tokens=False)["input_ids"])
    held_ids = torch.tensor(tokenizer((data_dir / "heldout.txt").read_text(encoding="utf-8"),
                                      add_special_tokens=False)["input_ids"])
    print(f"tokenizer: {len(tokenizer)} tokens; training text {len(train_ids):,} tokens, held-out {len(held_ids):,}")
    chunks = heldout_chunks(held_ids, s)
    chars = lambda ids: len(tokenizer.decode(ids))  # noqa: E731
    cfg = llada_config(s, mask_id, tokenizer.eos_token_id)
    hardware = f"cpu: {cpu_model()}, {s.budget.threads} threads"
    results = {}
    for kind in ("ar", "mdm"):
        if args.only and kind != args.only:
            continue
        from_ar = kind == "mdm" and s.budget.mdm_start == "ar"
        model = weights_from_ar(out / "ar", cfg) if from_ar else initial_model(cfg, s.budget.seed)
        result = train(kind, model, train_ids, s, mask_id)
        as_shipped(model)
        result.heldout_bits_per_char = heldout_bits_per_char(kind, model, chunks, chars, s, mask_id)
        result.heldout_metric = ("negative log-likelihood" if kind == "ar"
                                 else f"ELBO bound (an upper bound on the NLL; {s.elbo_samples} stratified t per window)")
        c = card(result, s, hardware, corpus)
        folder = save_ar(model, tokenizer, out / "ar") if kind == "ar" else save_mdm(model, tokenizer, out / "mdm", c)
        (folder / "training_card.json").write_text(json.dumps(c, indent=1))
        (folder / "TRAINING_CARD.md").write_text(card_markdown(c))
        print(f"{kind}: {result.n_params:,} parameters, {result.tokens_seen:,} tokens in {result.wall_s:.0f} s, held-out "
              f"{result.heldout_bits_per_char:.3f} bits/char ({result.heldout_metric})", flush=True)
        results[kind] = result
    if results:
        print(f"curves: {curves_figure(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

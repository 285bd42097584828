"""Write random-init LLaMA- and LLaDA-architecture checkpoints (official layouts) + tokenizers: the tiny ones
the tests and the mini sweep use, or larger ones of the same layouts (synthetic weights).

    python scripts/make_tiny_models.py [--out models/tiny] [--corpus data/prompts/mini_prompts.txt]
    python scripts/make_tiny_models.py --out models/midsize --d_model 1024 --n_layers 12 --families llama llada
"""

import argparse
import sys
from pathlib import Path

from dlm_bench.models.tiny import read_corpus, write_tiny_models
from dlm_bench.registry import FAMILIES, resolve

WRITABLE = sorted(name for name, family in FAMILIES.items() if family.tiny)  # families with a tiny-checkpoint writer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="models/tiny", help="output folder (one subfolder per family)")
    p.add_argument("--corpus", default="data/prompts/mini_prompts.txt", help="text to train the tokenizer on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d_model", type=int, help="width (default: each family's tiny size); with --n_layers")
    p.add_argument("--n_layers", type=int, help="layers (default: each family's tiny size)")
    p.add_argument("--families", nargs="+", choices=WRITABLE, help="only these families (default: all)")
    args = p.parse_args()
    if (args.d_model is None) != (args.n_layers is None) or (args.d_model is not None and
                                                             (args.d_model < 8 or args.d_model % 4 or args.n_layers < 1)):
        p.error("--d_model and --n_layers go together; allowed: d_model a multiple of 4 (>= 8), n_layers >= 1")
    if args.d_model is None and args.families is None:
        written = write_tiny_models(Path(args.out), Path(args.corpus), args.seed)
    else:
        corpus, size = read_corpus(Path(args.corpus)), ({} if args.d_model is None else
                                                        {"d_model": args.d_model, "n_layers": args.n_layers})
        written = {f: resolve(FAMILIES[f].tiny)(Path(args.out) / f, corpus, args.seed + i, **size)
                   for i, f in enumerate(args.families or WRITABLE)}
    for family, path in written.items():
        print(f"{family}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

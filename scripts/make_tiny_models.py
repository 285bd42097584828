"""Write tiny random-init LLaMA- and LLaDA-architecture checkpoints (official layouts) + tokenizers.

    python scripts/make_tiny_models.py [--out models/tiny] [--corpus data/prompts/mini_prompts.txt]
"""

import argparse
import sys
from pathlib import Path


from dlm_bench.models.tiny import write_tiny_models


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="models/tiny", help="output folder (llama/ and llada/ inside)")
    p.add_argument("--corpus", default="data/prompts/mini_prompts.txt", help="text to train the tokenizer on")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for family, path in write_tiny_models(Path(args.out), Path(args.corpus), args.seed).items():
        print(f"{family}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Prepare the Austen corpus into data/austen/ (ignored by git): five novels to train on, Persuasion held out.

    python scripts/prepare_austen.py [--out data/austen] [--deb path/to/r-cran-janeaustenr_*.deb]

Downloads Debian's r-cran-janeaustenr with `apt-get download` when no --deb is given (nothing is
installed; R is not needed) and writes train.txt, heldout.txt, prompts.txt (held-out passages of
at least 1,600 characters, one per line) and corpus.json (sizes and SHA-1s). Deterministic.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from dlm_bench.train import corpus


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/austen")
    p.add_argument("--deb", type=Path, help="the downloaded .deb (default: apt-get download into <out>/deb)")
    args = p.parse_args()
    out = ROOT / args.out
    try:
        summary = corpus.prepare(args.deb or corpus.download_deb(out / "deb"), out)
    except corpus.CorpusError as exc:
        print(f"corpus error: {exc}", file=sys.stderr)
        return 2
    (out / "corpus.json").write_text(json.dumps(summary, indent=1))
    files = {k: v for k, v in summary.items() if isinstance(v, dict)}
    sizes = ", ".join(f"{name} {v['lines']:,} lines" for name, v in files.items())
    print(f"corpus: {sizes} in {out} "
          f"(held out: {summary.get('held_out')}; sizes and SHA-1s in corpus.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rebuild the cell and pair records of a results folder from its tables, then merge (packs them).

    python scripts/restore_records.py results/raw_data/cpu_austen_trained --note "git 9a134cc"

For a folder whose tables are there and whose records are not (a study committed before its records
were): every row without a record gets one back, checked to merge into the same row before anything is
written. Records already there are kept. Exit 2 when a row would not come back.
"""

import argparse
import sys
from pathlib import Path


from dlm_bench.sweep.restore import RestoreError, restore_folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path, help="results folders (each with raw_metrics.csv)")
    p.add_argument("--note", default="", help="where the tables came from, kept in each record's restored_from")
    args = p.parse_args()
    for folder in args.folders:
        if not (folder / "raw_metrics.csv").is_file():
            print(f"restore error: {folder}: no raw_metrics.csv", file=sys.stderr)
            return 2
        try:
            done = restore_folder(folder, args.note)
        except RestoreError as exc:
            print(f"restore error: {exc}", file=sys.stderr)
            return 2
        print(f"{folder}: {done.cells} cell records and {done.pairs} pair records rebuilt from the tables "
              f"({done.kept_cells} and {done.kept_pairs} kept as they were); packed into cells.jsonl.xz, pairs.jsonl.xz")
    return 0


if __name__ == "__main__":
    sys.exit(main())

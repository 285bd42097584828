"""Rebuild cell and pair records from the tables a merge wrote, for a results folder whose records are gone.

A study folder from before records were committed has its tables (raw_metrics.csv, per_prompt.csv,
environment.json, pairs.csv) and no records, so a merge would rebuild the tables from nothing. Each
row holds everything its record's `to_row()` wrote, so the record comes back from it: the identity,
settings, every typed part, the quality estimates, the latencies of the repetitions (to 0.1 us) and,
from environment.json, the environment as it was. What no table holds stays out: the generations
kept for re-scoring, the outputs of the timed generation and the per-repetition marks (TTFT, ITL,
step times; their medians are in the timing part). Each rebuilt record says so in `restored_from`.

`restore_folder` checks the rebuilt records against the tables before it writes anything: every
row must come back string for string, or nothing is written.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import IDENTITY_COLUMNS
from ..metrics.quality import ESTIMATE_PARTS, QUALITY_METRICS
from ..stats import Estimate
from ..results import (_PARTS, PER_PROMPT_IDENTITY, TEXT_FIELDS, CellRecord, LoadStats, PairRecord, PairStore,
                      QualityResult, Repetition, ResultStore, kernel_of_legacy_label)

NAN = math.nan
CELL_FIELDS = ("status", "experiment", "weights", "hardware", "attention_kernel", "kernel", "clock", "error",
               "extras_error", "warmup", "warmup_steps", "agreement_with_uncached", "n_params", "n_params_non_embedding",
               "prompt_source", "started_at", "finished_at", "wall_s")
PAIR_FIELDS = tuple(f.name for f in dataclasses.fields(PairRecord)
                    if f.name not in (*PairRecord.LISTS, "load", "restored_from"))


class RestoreError(ValueError):
    """A table whose rows cannot be rebuilt into records that write the same rows again."""


def parse_value(text: str) -> Any:
    """A CSV cell back to the value whose `str()` wrote it: '' -> None, booleans, lists, ints, floats,
    else the text itself (a value is converted only when it writes back to the same text)."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        return value if str(value) == text else text
    for convert in (int, float):
        try:
            value = convert(text)
        except ValueError:
            continue
        if str(value) == text:
            return value
    return text


def _number(text: str) -> Any:
    """A part's numeric field: NaN where the table is empty."""
    value = parse_value(text)
    return NAN if value is None else value


def _part(cls, row: dict[str, str]):
    """A typed part from its columns; None when all of them are empty (and `repeats`, the one column an
    absent timing part writes, is 0)."""
    names = [f.name for f in dataclasses.fields(cls)]
    empty = [name for name in names if row.get(name, "") in ("", "0" if name == "repeats" else "")]
    if len(empty) == len(names):
        return None
    return cls(**{n: (_text(row.get(n, ""), f.default) if n in TEXT_FIELDS else _number(row.get(n, "")))
                  for n, f in zip(names, dataclasses.fields(cls))})


def _text(text: str, default: Any) -> Any:
    """A part's text field: its default where the table is empty and the field has a text default ("")."""
    value = parse_value(text)
    return default if value is None and isinstance(default, str) else value


def _quality(row: dict[str, str]) -> Optional[QualityResult]:
    estimates = {}
    for name in QUALITY_METRICS:
        parts = [row.get(f"{name}_{p}", "") for p in ESTIMATE_PARTS]
        if any(parts):
            estimates[name] = Estimate(*(_number(p) for p in parts))
    label, prompts = row.get("quality_label", ""), parse_value(row.get("quality_prompts", ""))
    if not label and not prompts and not estimates:
        return None
    return QualityResult(label, prompts or 0, parse_value(row.get("bertscore_model", "")),
                         parse_value(row.get("judge", "")), estimates)


def _per_prompt_entry(row: dict[str, str], identity: dict[str, Any]) -> dict[str, Any]:
    """A per-prompt entry from its per_prompt.csv row: every column but the cell's id and the identity
    columns merge puts in front (an entry's own value under such a name, where it differs, is kept)."""
    def written(value: Any) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)

    return {k: parse_value(v) for k, v in row.items()
            if k != "cell_id" and not (k in PER_PROMPT_IDENTITY and written(identity.get(k)) == v)}


def cell_from_row(row: dict[str, str], environment: Optional[dict], per_prompt_rows: list[dict[str, str]],
                  source: str) -> CellRecord:
    """One cell record from its raw_metrics.csv row (and its environment and per_prompt.csv rows)."""
    identity = {k: parse_value(row[k]) for k in IDENTITY_COLUMNS if k in row}
    record = CellRecord(
        cell_id=row["cell_id"], identity=identity,
        status=row["status"], experiment=row["experiment"], weights=row["weights"], hardware=row["hardware"],
        settings={k[len("setting_"):]: parse_value(v) for k, v in row.items() if k.startswith("setting_")},
        environment=environment if environment is not None else
        {k[len("env_"):]: parse_value(v) for k, v in row.items() if k.startswith("env_")},
        restored_from=source, per_prompt=[_per_prompt_entry(r, identity) for r in per_prompt_rows])
    for name in CELL_FIELDS:
        value = parse_value(row.get(name, ""))
        setattr(record, name, NAN if value is None and name == "wall_s" else value)
    if "kernel" not in row:  # a table from before the field
        record.kernel = kernel_of_legacy_label(record.attention_kernel)
    record.warmup = record.warmup or 0
    for name, cls in _PARTS.items():
        setattr(record, name, _part(cls, row))
    record.quality = _quality(row)
    record.passage_ids = row["passage_ids"].split(";") if row.get("passage_ids") else []
    record.repetitions = [Repetition(latency_ms=float(x), tokens_per_s=NAN)
                          for x in row.get("latency_ms_all", "").split(";") if x]
    return record


def pair_from_row(row: dict[str, str], source: str) -> PairRecord:
    """One pair record from its pairs.csv row."""
    values = {name: parse_value(row.get(name, "")) for name in PAIR_FIELDS}
    values["order"], values["solo_order"] = row.get("order", ""), row.get("solo_order", "")
    values["wall_s"] = NAN if values["wall_s"] is None else values["wall_s"]
    lists = {name: [float(x) for x in row.get(f"{name}_all", "").split(";") if x] for name in PairRecord.LISTS}
    return PairRecord(**values, **lists, restored_from=source, load=_part(LoadStats, row))


def _differences(table: str, rows: list[dict[str, str]], again: list[dict[str, str]], key) -> list[str]:
    """Where a table rebuilt from the restored records differs from the original's rows (every column, as
    text; rows matched by `key`, a column one table lacks reads as empty)."""
    rebuilt = {}
    for row in again:
        rebuilt.setdefault(key(row), []).append(row)
    out = []
    for original in rows:
        matches = rebuilt.get(key(original), [])
        if not matches:
            out.append(f"{table} {key(original)}: no row")
            continue
        row = matches.pop(0)
        out += [f"{table} {key(original)} {c}: {original.get(c, '')!r} would become {row.get(c, '')!r}"
                for c in sorted(set(original) | set(row)) if original.get(c, "") != row.get(c, "")]
    return out


def _write_and_merge(store: ResultStore, pair_store: PairStore, cells: list[CellRecord],
                     pairs: list[PairRecord]) -> None:
    """Write the records into their folders and rebuild both tables from them."""
    for record in cells:
        store.write(record)
    for record in pairs:
        pair_store.write(record)
    store.merge()
    pair_store.merge()


def _check(root: Path, cells: list[CellRecord], pairs: list[PairRecord], cell_rows: list[dict[str, str]],
           pair_rows: list[dict[str, str]], environments: dict[str, dict]) -> list[str]:
    """Merge the restored records in a scratch folder and compare what comes out with the tables."""
    with tempfile.TemporaryDirectory() as scratch:
        store, pair_store = ResultStore(scratch), PairStore(scratch)
        _write_and_merge(store, pair_store, cells, pairs)
        ids = {r.cell_id for r in cells}
        per_prompt = [r for r in _read_csv(root / "per_prompt.csv") if r["cell_id"] in ids]
        passage = lambda r: (r["cell_id"], r.get("passage_id", ""))  # noqa: E731
        problems = (_differences("raw_metrics.csv", cell_rows, _read_csv(Path(scratch) / store.table),
                                 lambda r: r["cell_id"])
                    + _differences("per_prompt.csv", per_prompt, _read_csv(Path(scratch) / "per_prompt.csv"), passage)
                    + _differences("pairs.csv", pair_rows, _read_csv(Path(scratch) / pair_store.table),
                                   lambda r: r["pair_id"]))
        for entry in json.loads((Path(scratch) / "environment.json").read_text(encoding="utf-8")):
            problems += [f"environment.json {cell_id}: the environment differs" for cell_id in entry["cell_ids"]
                         if cell_id in environments and environments[cell_id] != entry["environment"]]
    return problems


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass
class Restored:
    """What `restore_folder` found and wrote."""

    cells: int  # records rebuilt from raw_metrics.csv
    pairs: int  # records rebuilt from pairs.csv
    kept_cells: int  # rows whose record was there already (never replaced)
    kept_pairs: int


def restore_folder(root: Path, source_note: str = "") -> Restored:
    """Rebuild the record of every table row that has none, check them, write them and merge; records
    already there are kept. Raises RestoreError (nothing written) when the rebuilt records would not
    merge into the same rows."""
    root = Path(root)
    cells, pairs = ResultStore(root), PairStore(root)
    suffix = f" ({source_note})" if source_note else ""
    environments: dict[str, dict] = {}
    env_path = root / "environment.json"
    if env_path.is_file():
        for entry in json.loads(env_path.read_text(encoding="utf-8")):
            environments.update({cell_id: entry["environment"] for cell_id in entry["cell_ids"]})
    per_prompt: dict[str, list[dict[str, str]]] = {}
    for row in _read_csv(root / "per_prompt.csv"):
        per_prompt.setdefault(row["cell_id"], []).append(row)

    have_cells = {r.cell_id for r in cells.records()}
    cell_rows = [r for r in _read_csv(root / cells.table) if r["cell_id"] not in have_cells]
    new_cells = [cell_from_row(r, environments.get(r["cell_id"]), per_prompt.get(r["cell_id"], []),
                               cells.table + suffix) for r in cell_rows]
    have_pairs = {r.pair_id for r in pairs.records()}
    pair_rows = [r for r in _read_csv(root / pairs.table) if r["pair_id"] not in have_pairs]
    new_pairs = [pair_from_row(r, pairs.table + suffix) for r in pair_rows]

    problems = _check(root, new_cells, new_pairs, cell_rows, pair_rows, environments)
    if problems:
        raise RestoreError(f"{root}: {len(problems)} values would not come back, nothing written; first: {problems[0]}")
    _write_and_merge(cells, pairs, new_cells, new_pairs)
    return Restored(len(new_cells), len(new_pairs), len(have_cells), len(have_pairs))

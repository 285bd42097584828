import csv
import json

import math

import pytest

from dlm_bench.fileio import atomic_write_text
from dlm_bench.stats import Estimate
from dlm_bench.results import CellRecord, QualityResult, Repetition, ResultStore, TimingStats


def _record(cell_id, status="ok", model="m", latency=10.0):
    record = CellRecord(cell_id=cell_id, identity={"model_name": model, "kind": "autoregressive", "seq_len": 8,
                                                   "batch_size": 1, "decode": "eager"},
                        status=status, experiment="e", weights="synthetic", hardware="cpu: test",
                        settings={"seed": 1}, environment={"hardware": "cpu: test"})
    if status == "ok":
        record.repetitions = [Repetition(latency, 400.0)]
        record.timing = TimingStats.from_repetitions(record.repetitions)
    return record


def test_done_statuses_and_retry_of_errors(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record("a", "ok"))
    store.write(_record("b", "oom"))
    store.write(_record("c", "error"))
    assert store.is_done("a") and store.is_done("b")
    assert not store.is_done("c") and not store.is_done("missing")


def test_merge_is_idempotent_and_has_one_row_per_cell(tmp_path):
    store = ResultStore(tmp_path)
    for i in range(3):
        store.write(_record(f"id{i}", latency=float(i)))
    store.write(_record("id1", latency=99.0))  # a re-run replaces, never duplicates
    first = store.merge().read_bytes()
    second = store.merge().read_bytes()
    assert first == second
    rows = list(csv.DictReader(open(tmp_path / "raw_metrics.csv")))
    assert sorted(r["cell_id"] for r in rows) == ["id0", "id1", "id2"]
    assert [r["latency_ms_median"] for r in rows if r["cell_id"] == "id1"] == ["99.0"]
    assert rows[0]["env_hardware"] == "cpu: test"
    env = json.loads((tmp_path / "environment.json").read_text())
    assert len(env) == 1 and sorted(env[0]["cell_ids"]) == ["id0", "id1", "id2"]


def test_a_merge_that_changes_nothing_writes_nothing_and_the_rows_come_from_the_records(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record("id0", latency=5.0))
    table = store.merge()
    inode = table.stat().st_ino  # every write is a rename of a new file: a new inode
    store.merge()
    assert table.stat().st_ino == inode
    assert [r["latency_ms_median"] for r in store.rows()] == [5.0]
    store.write(_record("id1", latency=6.0))
    assert store.merge().stat().st_ino != inode  # new rows: a new table


def test_json_records_are_strict_json(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record("n"))  # NaN fields become null
    text = (tmp_path / "cells" / "n.json").read_text()
    assert "NaN" not in text and json.loads(text)["timing"]["ttft_ms_median"] is None


@pytest.mark.parametrize("content", [b'{"cell_id": "broken", "sta', b"\x89PNG\x00\xff binary", b"[]", b"{}",
                                     b'{"cell_id": "x"}'], ids=["truncated", "binary", "list", "empty", "partial"])
def test_a_malformed_record_is_reported_once_moved_aside_and_its_cell_runs_again(tmp_path, caplog, content):
    store = ResultStore(tmp_path)
    store.write(_record("good"))
    (tmp_path / "cells" / "bad.json").write_bytes(content)
    with caplog.at_level("WARNING"):
        assert [r.cell_id for r in store.records()] == ["good"]
        assert [r.cell_id for r in store.records()] == ["good"]
    assert sum("bad.json is not a cell record" in m for m in caplog.messages) == 1
    assert not (tmp_path / "cells" / "bad.json").exists()
    (moved,) = (tmp_path / "cells" / "malformed").iterdir()
    assert moved.read_bytes() == content and not store.is_done("bad")
    assert store.merge().read_text().count("\n") == 2  # header + the good row


def test_atomic_write_leaves_no_temp_and_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "x.txt", "hello")
    finally:
        os.umask(old)
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert not list(tmp_path.glob(".x.txt.*"))
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o644  # readable by the group, as results are shared


def test_timing_stats_from_repetitions_by_hand():
    reps = [Repetition(10.0, 100.0, ttft_ms=1.0), Repetition(30.0, 50.0, ttft_ms=3.0), Repetition(20.0, 60.0)]
    t = TimingStats.from_repetitions(reps)
    assert (t.repeats, t.latency_ms_median, t.latency_ms_min, t.latency_ms_max) == (3, 20.0, 10.0, 30.0)
    assert t.latency_ms_cv == pytest.approx(10.0 / 20.0)  # sample sd of 10, 20, 30 is 10
    assert t.tokens_per_s_median == 60.0 and t.ttft_ms_median == 2.0 and math.isnan(t.itl_ms_median)


def test_to_row_flattens_every_part_once_and_round_trips(tmp_path):
    record = _record("r1", latency=12.5)
    record.quality = QualityResult("model quality", 4, "enc@L6", None, {"bertscore_f1": Estimate(0.5, 0.4, 0.6)})
    row = record.to_row()
    assert row["model_name"] == "m" and row["decode"] == "eager" and row["latency_ms_median"] == 12.5
    assert (row["bertscore_f1_mean"], row["bertscore_f1_ci_low"], row["bertscore_f1_ci_high"]) == (0.5, 0.4, 0.6)
    assert math.isnan(row["gen_ppl_mean"])  # a declared quality column that was not scored
    assert row["setting_seed"] == 1 and row["env_hardware"] == "cpu: test" and row["latency_ms_all"] == "12.5000"
    assert math.isnan(row["mfu"])  # no roofline part yet: NaN columns, the header stays the same
    store = ResultStore(tmp_path)
    store.write(record)
    again = store.read("r1")
    assert again.quality.estimates["bertscore_f1"] == Estimate(0.5, 0.4, 0.6)
    assert again.to_row().keys() == row.keys() and again.timing == record.timing


# --------------------------------------------------------------------------- the committed source and the guard


def _three_cells(root):
    store = ResultStore(root)
    for i in range(3):
        store.write(_record(f"id{i}", latency=10.0 + i))
    store.merge()
    return store


def test_merge_packs_every_record_and_a_folder_with_only_the_archive_merges_to_the_same_tables(tmp_path):
    import lzma
    import shutil

    _three_cells(tmp_path)
    tables = {name: (tmp_path / name).read_bytes() for name in ("raw_metrics.csv", "environment.json")}
    lines = lzma.decompress((tmp_path / "cells.jsonl.xz").read_bytes()).decode().splitlines()
    assert [json.loads(line)["cell_id"] for line in lines] == ["id0", "id1", "id2"]  # one line per record, by id
    assert json.loads((tmp_path / "merge.json").read_text()) == {"raw_metrics.csv": {"records": 3}}
    shutil.rmtree(tmp_path / "cells")  # what a fresh clone has: the archive and the tables
    fresh = ResultStore(tmp_path)
    assert fresh.is_done("id1") and fresh.read("id2").timing.latency_ms_median == 12.0
    fresh.merge()
    assert {name: (tmp_path / name).read_bytes() for name in tables} == tables


def test_an_archive_holding_the_same_records_is_not_rewritten(tmp_path):
    store = _three_cells(tmp_path)
    archive = tmp_path / "cells.jsonl.xz"
    before = archive.stat().st_mtime_ns, archive.read_bytes()
    ResultStore(tmp_path).merge()
    assert (archive.stat().st_mtime_ns, archive.read_bytes()) == before
    store.write(_record("id3"))
    store.merge()
    assert archive.read_bytes() != before[1]


def test_a_record_file_replaces_the_archived_record_of_its_id(tmp_path):
    store = _three_cells(tmp_path)
    store.write(_record("id1", latency=99.0))  # measured again: the file is newer than the archive
    store.merge()
    rows = {r["cell_id"]: r for r in csv.DictReader(open(tmp_path / "raw_metrics.csv"))}
    assert len(rows) == 3 and rows["id1"]["latency_ms_median"] == "99.0"


def test_a_merge_that_would_drop_rows_refuses_and_writes_nothing_unless_allowed(tmp_path):
    from dlm_bench.results import ShrinkError

    _three_cells(tmp_path)
    (tmp_path / "cells" / "id2.json").unlink()
    (tmp_path / "cells.jsonl.xz").unlink()  # the record of id2 is gone everywhere
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ShrinkError) as err:
        ResultStore(tmp_path).merge()
    assert str(tmp_path) in str(err.value) and "holds 3 rows" in str(err.value) and "rebuild 2" in str(err.value)
    assert "--allow_shrink" in str(err.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # nothing written
    ResultStore(tmp_path).merge(allow_shrink=True)
    assert sorted(r["cell_id"] for r in csv.DictReader(open(tmp_path / "raw_metrics.csv"))) == ["id0", "id1"]
    assert json.loads((tmp_path / "merge.json").read_text())["raw_metrics.csv"] == {"records": 2}


def test_shrink_problem_exempts_the_cells_a_run_measures_again(tmp_path):
    _three_cells(tmp_path)
    (tmp_path / "cells" / "id2.json").unlink()
    (tmp_path / "cells.jsonl.xz").unlink()
    store = ResultStore(tmp_path)
    assert "1 of its rows have no record (e.g. id2)" in store.shrink_problem()
    assert store.shrink_problem(exempt=frozenset({"id2"})) is None


def test_a_pair_table_is_guarded_and_packed_like_the_cell_table(tmp_path):
    from dlm_bench.results import PairRecord, PairStore, ShrinkError

    store = PairStore(tmp_path)
    for i in range(2):
        store.write(PairRecord(f"p{i}", "speedup", "ok", "e", "cpu: test", "a", "b", "A", "B", 8, 1, 0, "RC",
                               [1.0], [2.0]))
    store.merge()
    assert (tmp_path / "pairs.jsonl.xz").is_file()
    (tmp_path / "pairs" / "p1.json").unlink()
    assert PairStore(tmp_path).read("p1").contender_ms == [2.0]  # still in the archive
    (tmp_path / "pairs.jsonl.xz").unlink()
    with pytest.raises(ShrinkError):
        PairStore(tmp_path).merge()


def test_a_remeasured_study_drops_only_the_pairs_it_no_longer_wants_that_were_measured_before_it(tmp_path):
    import csv

    from dlm_bench.results import PairRecord, PairStore

    store = PairStore(tmp_path)
    started = {"old_wanted": "2026-01-01T00:00:00+00:00", "old_unwanted": "2026-01-01T00:00:00+00:00",
               "new_unwanted": "2026-01-03T00:00:00+00:00"}
    for pid, at in started.items():
        store.write(PairRecord(pid, "speedup", "ok", "e", "cpu: test", "a", "b", "A", "B", 8, 1, 0, "RC",
                               [1.0], [2.0], started_at=at))
    store.merge()
    (tmp_path / "pairs" / "old_unwanted.json").unlink()  # in the archive only, as a committed study's records are
    dropped = store.drop_stale({"old_wanted"}, before="2026-01-02T00:00:00+00:00")
    assert dropped == ["old_unwanted"]  # the one started after the re-measurement began stays
    store.merge(dropped=frozenset(dropped))
    assert sorted(r["pair_id"] for r in csv.DictReader(open(tmp_path / "pairs.csv"))) == ["new_unwanted", "old_wanted"]
    assert PairStore(tmp_path).read("old_unwanted") is None
    assert store.drop_stale({"old_wanted"}, before="2026-01-02T00:00:00+00:00") == []


def test_a_damaged_archive_is_an_error_and_is_left_as_it_is(tmp_path):
    from dlm_bench.results import ArchiveError

    _three_cells(tmp_path)
    archive = tmp_path / "cells.jsonl.xz"
    archive.write_bytes(archive.read_bytes()[:40])  # truncated
    damaged = archive.read_bytes()
    with pytest.raises(ArchiveError, match="cells.jsonl.xz: not a cell record archive"):
        ResultStore(tmp_path).merge()
    assert archive.read_bytes() == damaged


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import os

    from dlm_bench import fileio

    target = tmp_path / "raw_metrics.csv"
    atomic_write_text(target, "old table\n")

    def power_cut(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(fileio.os, "fsync", power_cut)
    with pytest.raises(OSError):
        atomic_write_text(target, "new table, half written")
    assert target.read_text() == "old table\n" and sorted(os.listdir(tmp_path)) == ["raw_metrics.csv"]


def test_the_one_loader_reads_records_as_the_analysis_reads_their_table(tmp_path):
    import pandas as pd

    from dlm_bench.results import read_rows, rows_frame

    assert rows_frame([]).empty
    store = ResultStore(tmp_path)
    for cell_id, latency in (("0123", 5.0), ("1e10", 6.5)):  # ids pandas would read as numbers
        store.write(_record(cell_id, latency=latency))
    frame, table = rows_frame(store.records()), read_rows(store.merge())
    pd.testing.assert_frame_equal(frame, table)
    assert list(frame["cell_id"]) == ["0123", "1e10"] and list(frame["latency_ms_median"]) == [5.0, 6.5]

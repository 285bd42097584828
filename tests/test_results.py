import csv
import json

from src.results import CellRecord, ResultStore, atomic_write_text


def _record(cell_id, status="ok", model="m", latency=10.0):
    return CellRecord(cell_id=cell_id, status=status, experiment="e", model_name=model, family="llama",
                      kind="autoregressive", model_source="x", weights="synthetic", batch_size=1, seq_len=8,
                      prompt_len=4, n_out=4, steps=None, sampler=None, cache=None, decode="eager", block_length=None,
                      temperature=0.0, cfg_scale=None, threshold=None, precision="bf16", attention_backend="sdpa",
                      latency_ms_median=latency, environment={"hardware": "cpu: test"})


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


def test_json_records_are_strict_json(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record("n"))  # NaN fields become null
    text = (tmp_path / "cells" / "n.json").read_text()
    assert "NaN" not in text and json.loads(text)["ttft_ms_median"] is None


def test_half_written_files_are_ignored_and_atomic_write_leaves_no_temp(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record("good"))
    (tmp_path / "cells" / "broken.json").write_text('{"cell_id": "broken", "sta')
    assert [r["cell_id"] for r in store.records()] == ["good"]
    atomic_write_text(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert not list(tmp_path.glob(".x.txt.*"))

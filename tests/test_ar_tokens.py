"""The split of the AR decode's time per token into weight streaming and the rest, on rows made by hand."""

import pandas as pd

from dlm_bench.analysis.ar_tokens import ar_tokens_markdown, token_split
from dlm_bench.analysis.data import Results


def _row(cell_id, itl, engine="torch", weights_format=None, batch_size=1, min_bytes=None, decode="static"):
    return {"cell_id": cell_id, "status": "ok", "kind": "autoregressive", "model_name": "ar", "seq_len": 64,
            "batch_size": batch_size, "itl_ms_median": itl, "engine": engine, "weights_format": weights_format,
            "precision": "fp32", "hardware": "cpu: test", "decode": decode if engine == "torch" else None,
            "min_bytes_per_generation": min_bytes, "weights": "pretrained"}


def test_a_decode_step_splits_into_streaming_at_the_read_bandwidth_and_the_rest():
    # 10 MB per step at 20 GB/s: 0.5 ms; a 2 ms step leaves 1.5 ms, a quarter streams
    assert token_split(2.0, 10e6, 20e9) == (0.5, 1.5, 0.25)


def test_the_table_has_each_ar_path_at_the_smallest_batch_at_the_sweeps_precision():
    torch_rows = pd.DataFrame([_row("t1", 2.0, min_bytes=32 * 10e6),  # N_out 32: 10 MB per step
                               _row("t8", 3.0, batch_size=8, min_bytes=32 * 80e6)])
    engine_rows = pd.DataFrame([_row("lf", 0.8, "llamacpp", "f32"), _row("lq", 0.3, "llamacpp", "q8_0")])
    results = Results(torch_rows, pd.DataFrame(), engine_rows=engine_rows,
                      calibration={"cpu: test": {"read_tbps": 0.02}})
    text = ar_tokens_markdown(results)
    lines = [line for line in text.splitlines() if line.startswith("| ar ")]
    # llama.cpp f32 first (fastest): 0.8 ms = 0.5 streaming + 0.3 rest (62%); torch static 2.0 = 0.5 + 1.5 (25%)
    assert lines == ["| ar | 64 | 1 | llamacpp:f32 | 0.800 | 0.500 | 0.300 | 62% |",
                     "| ar | 64 | 1 | static | 2.000 | 0.500 | 1.500 | 25% |"]
    assert "20.0 GB/s" in text
    assert "No read bandwidth" in ar_tokens_markdown(Results(torch_rows, pd.DataFrame(), engine_rows=engine_rows))

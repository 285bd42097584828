"""What a cell is measured and scored on, as plain functions and tables (torch-free, no project imports
but `stats`): `timing` (one function per latency / throughput metric, ms and tokens) and `quality`
(the table of quality metrics: names, labels, directions, which ones decide S_parity)."""

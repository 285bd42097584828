"""What is compared with what, chosen from rows alone (torch-free): the as-published paths every ratio is
taken against (`baseline`), S_parity per (N, B, metric, pair of paths) (`parity`), the cell pairs whose
ratio the summary publishes and the ratio of a measured pair (`pairs`). The sweep's pairs step and the
analysis both read it; it imports neither of them."""

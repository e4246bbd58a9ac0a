"""benchmarks/bench_train.py end to end on a small real on-disk store (CPU)."""

from __future__ import annotations

import numpy as np

from ..bench_loader import load_benchmark


def test_bench_train_times_windows_and_one_step_paths(tmp_path):
    from data_pipeline.store_writer import CloudRecord, write_store

    rng = np.random.default_rng(0)
    records = (CloudRecord(f"c{i}", np.cumsum(rng.normal(size=(n, 3)), 0).astype(np.float32),
                           rng.integers(0, 21, n).astype(np.uint8), {"group": f"g{i}"})
               for i, n in enumerate(rng.integers(20, 60, 40)))
    write_store(records, tmp_path / "store", {"synthetic": True})
    out = tmp_path / "table.md"
    bench = load_benchmark("bench_train")
    assert bench.main(["--device", "cpu", "--store", str(tmp_path / "store"), "--batch-sizes", "8", "--steps", "2",
                       "--view-window", "2", "--write", str(out)]) == 0
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| CPU")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0]]
    assert cells[1:3] == ["8", "2"]  # batch, view window
    step_ms, data_ms, share = float(cells[4]), float(cells[5]), float(cells[6].rstrip("%"))
    assert 0 < data_ms < step_ms and abs(share - 100 * data_ms / step_ms) < 0.1
    assert 0 < float(cells[7]) < 45  # a window of 2 dispatches fewer ops per step than one step at a time (45)


def test_window_times_charge_each_step_its_share_and_ignore_an_outlier_window():
    per_window_median = load_benchmark("bench_train").per_window_median
    # the first step of each window of 2 makes both steps' views; the third window is slow
    assert per_window_median([10, 0, 10, 0, 100, 0], 2) == 5
    assert per_window_median([1, 2, 30], 1) == 2
    assert per_window_median([4, 0, 0, 4, 0, 0, 4], 3) == 4 / 3  # an incomplete last window is left out

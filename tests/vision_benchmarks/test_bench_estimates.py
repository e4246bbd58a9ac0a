"""The Table 1 wall-clock estimate of benchmarks/bench_vision_step.py: epochs × ⌊training
images / batch⌋ × the measured step time, one timing per distinct step, every cell listed."""

from __future__ import annotations

import sys

import pytest
import torch

from ..bench_loader import load_benchmark


@pytest.fixture(scope="module")
def bench():
    """The estimate functions of bench_vision_step (they live in benchmarks/_table1_estimates.py,
    whose own ``measure_config_step`` the tests replace: the real one on the full configs
    would time ResNet-50 steps at batch 512 on the CPU)."""
    script = load_benchmark("bench_vision_step")
    return sys.modules[script.estimate_table.__module__]


def test_estimate_is_epochs_times_steps_times_step_time(bench, monkeypatch, capsys):
    timed = []

    def fake_step(cfg, device, steps, warmup=2):
        timed.append(cfg["config_file"])
        return 0.5 if cfg["method"]["loss"] == "care" else 0.25

    monkeypatch.setattr(bench, "measure_config_step", fake_step)
    rows = bench.estimate_table(torch.device("cpu"), 3, False, "test device")
    assert [r["config"] for r in rows] == [f"{d}_{m}" for d in bench.TRAIN_IMAGES for m in bench.TABLE1_METHODS]
    by_name = {r["config"]: r for r in rows}
    c10 = by_name["cifar10_care"]
    assert (c10["steps_per_epoch"], c10["epochs"], c10["views"]) == (50_000 // 256, 400, 4)
    assert c10["estimate_hours"] == pytest.approx(400 * 195 * 0.5 / 3600)
    assert by_name["imagenet100_simclr"]["estimate_hours"] == pytest.approx(200 * (126_689 // 512) * 0.25 / 3600)
    assert 0 < len(timed) < len(rows)  # cells with the same step (e.g. CIFAR10/CIFAR100 SimCLR) are timed once
    assert "all 16 cells" in capsys.readouterr().out


def test_toy_configs_are_small_and_labelled(bench, monkeypatch, capsys):
    monkeypatch.setattr(bench, "measure_config_step", lambda cfg, device, steps, warmup=2: 0.1)
    rows = bench.estimate_table(torch.device("cpu"), 1, True, "CPU", only="stl10_care")
    assert [r["config"] for r in rows] == ["stl10_care", "stl10_care-moco"]
    assert all(r["toy"] and r["width"] == 8 and r["batch"] == 32 for r in rows)
    assert "CPU TOY" in capsys.readouterr().out


def test_one_real_toy_step_is_timed(bench):
    cfg = dict(bench.table1_configs(toy=True))["cifar10_care"]
    assert bench.measure_config_step(cfg, torch.device("cpu"), steps=1, warmup=0) > 0

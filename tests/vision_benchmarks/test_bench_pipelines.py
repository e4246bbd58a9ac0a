"""The pipeline table of benchmarks/bench_vision_step.py on CPU at toy size: every row is
timed through the training step's own view embedding, the optional rows appear when asked
for, and the FLOP column rests on the encoder's true cost."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from ..bench_loader import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_vision_step")


@pytest.mark.parametrize("arch,gflop", [("resnet18", 3 * 1.11), ("resnet50", 3 * 2.60)])
def test_network_flops_match_the_published_cifar_resnet_counts(bench, arch, gflop):
    # CIFAR-stem ResNet-18/50 at 32 px: 0.56 / 1.30 G multiply-adds forward (1.11 / 2.60 GFLOP);
    # the backward pass costs about twice the forward
    assert bench.network_gflop_per_image(arch, 64) == pytest.approx(gflop, rel=0.03)


def test_toy_table_has_the_asked_rows_with_flops_and_no_gpu_share_on_cpu(bench, monkeypatch):
    joint_sizes = []
    embed_views = bench.SimCLR.embed_views

    def recording(self, views):
        if self.passes == "joint":
            joint_sizes.append([v.shape[0] for v in views])
        return embed_views(self, views)

    monkeypatch.setattr(bench.SimCLR, "embed_views", recording)
    args = argparse.Namespace(toy=True, steps=1, n_split=16, compile_augment=False, joint_passes=True,
                              compile_model=False, profile=True)
    rows = bench.pipeline_table(args, torch.device("cpu"), False, "CPU test")
    assert [r["pipeline"] for r in rows] == ["batched-simclr", "batched-care", "release-care", "care-joint"]
    per_image = bench.network_gflop_per_image("resnet18", 8)
    for row in rows:
        views = 2 if row["pipeline"] == "batched-simclr" else 4
        assert row["network_gflop"] == pytest.approx(per_image * views * 32)
        assert row["tflop_per_s"] == pytest.approx(row["network_gflop"] / row["step_ms"])
        assert row["gpu_busy_ms"] is None  # the GPU's busy time exists on CUDA only
    assert joint_sizes and all(sizes == [32] * 4 for sizes in joint_sizes)


def test_flop_ceiling_is_the_release_step_over_the_fastest_care_step_the_rates_allow(capsys, tmp_path):
    flops = load_benchmark("vision_step_flops")
    gflop = {"resnet18": 3.0}

    def row(pipeline, batch, step_ms, augment_ms):
        return {"pipeline": pipeline, "arch": "resnet18", "batch": batch, "step_ms": step_ms, "augment_ms": augment_ms}

    result = {"device": "GPU", "date": "2026-11-26", "torch": "x", "pipelines": [
        row("batched-simclr", 100, 12.0, 2.0),   # 600 GFLOP in 10 ms: 60 TFLOP/s, the best rate
        row("batched-care", 100, 30.0, 4.0),     # 1200 GFLOP in 26 ms
        row("release-care", 100, 150.0, 126.0),  # 1200 GFLOP in 24 ms
        row("care-joint", 100, 28.0, 3.0),
    ]}
    rows = flops.network_rows(result, gflop)
    assert [r["network_tflop_per_s"] for r in rows] == pytest.approx([60.0, 1200 / 26, 50.0, 48.0])
    (cell,) = flops.ceilings(rows)
    assert cell["care_pipeline"] == "care-joint" and cell["measured_ratio"] == pytest.approx(150 / 28)
    assert cell["floor_ms"] == pytest.approx(1200 / 60 + 3.0)  # four passes at 60 TFLOP/s + the least augmentation
    assert cell["ceiling_ratio"] == pytest.approx(150 / 23)
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(result))
    flops.main([str(path)])
    assert "6.5x" in capsys.readouterr().out


def test_flop_ceiling_names_a_file_that_is_not_benchmark_output(tmp_path, capsys):
    flops = load_benchmark("vision_step_flops")
    bad = tmp_path / "notes.json"
    bad.write_text('{"rows": []}')
    for path in (bad, tmp_path / "missing.json"):
        with pytest.raises(SystemExit) as exit_info:
            flops.main([str(path)])
        assert exit_info.value.code == 2
        assert f"{path}: not a JSON file written by bench_vision_step.py --out" in capsys.readouterr().err
    # a run without the release pipeline's rows has no ratio to bound
    rows = flops.network_rows({"pipelines": [{"pipeline": "batched-care", "arch": "resnet18", "batch": 8,
                                               "step_ms": 2.0, "augment_ms": 1.0}]}, {"resnet18": 1.0})
    assert flops.ceilings(rows) == []

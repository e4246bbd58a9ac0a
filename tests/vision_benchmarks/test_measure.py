"""The paper's measurements (Figs. 2c/3, 5, 6): single augmentations per type, W_f and γ_f
on hand-made encoders with a known answer, and ``vision-benchmarks evaluate`` on a tiny
digits run writing evaluation.json and self-contained HTML figures."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from protein_care.geometry import wahba_error
from vision_benchmarks.augment import AugmentConfig, BatchAugment, apply_params, sample_params
from vision_benchmarks.cli import main
from vision_benchmarks.config import load_config
from vision_benchmarks.data import load_dataset
from vision_benchmarks.measure import (
    AUGMENTATION_TYPES, augmentation_geometry, image_subset, only, sample_augmentations, summarize,
)
from vision_benchmarks.train import build_all, load_checkpoint, pretrain, snapshot_paths

TINY = ["run.device=cpu", "run.progress=false", "run.channels_last=false", "model.width=4", "data.train_subset=48",
        "data.test_subset=40", "optim.batch_size=16", "method.n_split=4", "method.equiv_batch_size=0", "knn.k=5"]


class FlipRotates(nn.Module):
    """z = (L−R of channel 0, L−R of channel 1, L+R of channel 2) of the left/right half
    means: a horizontal flip maps z to diag(−1, −1, 1)·z, a rotation by π."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        half = x.shape[-1] // 2
        left, right = x[..., :half].mean(dim=(2, 3)), x[..., half:].mean(dim=(2, 3))
        z = torch.stack([left[:, 0] - right[:, 0], left[:, 1] - right[:, 1], left[:, 2] + right[:, 2] + 5], 1)
        return z * self.scale, z * self.scale


@pytest.fixture(scope="module")
def colour_images():
    return torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_each_type_applies_only_its_own_op():
    config = AugmentConfig(size=16)
    params = sample_params(5, 16, 16, config, torch.Generator().manual_seed(0))
    for kind in AUGMENTATION_TYPES[:-1]:
        p = only(kind, params, 16, 16)
        for op in ("flip", "jitter", "grayscale", "blur"):
            assert p.__dict__[op].tolist() == [op == kind] * 5, (kind, op)
        whole = torch.tensor([[0, 0, 16, 16]] * 5)
        assert torch.equal(p.crop, params.crop) if kind == "crop" else torch.equal(p.crop, whole)
    assert only("full", params, 16, 16) is params
    with pytest.raises(ValueError, match="unknown augmentation type"):
        only("rotate", params, 16, 16)


def test_sampled_augmentations_cycle_through_the_types_and_repeat_with_the_seed():
    config = AugmentConfig(size=16)
    first = sample_augmentations(20, 16, 16, config, torch.Generator().manual_seed(3))
    again = sample_augmentations(20, 16, 16, config, torch.Generator().manual_seed(3))
    assert [k for k, _ in first] == [AUGMENTATION_TYPES[i % 6] for i in range(20)]
    assert all(len(p) == 1 and torch.equal(p.sigma, q.sigma) for (_, p), (_, q) in zip(first, again))


def test_a_flip_that_acts_as_a_rotation_has_zero_wahba_error_and_zero_gamma(colour_images):
    augment = BatchAugment(AugmentConfig(size=16))
    flips = [(k, p) for k, p in sample_augmentations(6, 16, 16, augment.config, torch.Generator().manual_seed(0))
             if k == "flip"]
    (record,) = augmentation_geometry(FlipRotates(), colour_images, augment, flips, space="projection", bins=10)
    assert record["wahba_error"] < 1e-5 and record["gamma"] < 1e-10  # a rotation: W_f = 0 and γ_f = 0 ...
    assert record["cos_mean"] < 0.999 and record["gamma_skipped"] == 0  # ... although the points move
    assert sum(record["cos_hist"]) == colour_images.shape[0]


def test_records_are_wahba_error_of_one_augmentation_shared_by_the_batch(colour_images):
    augment = BatchAugment(AugmentConfig(size=16))
    augs = sample_augmentations(6, 16, 16, augment.config, torch.Generator().manual_seed(1))
    records = augmentation_geometry(FlipRotates(), colour_images, augment, augs, space="backbone", bins=8)
    enc = FlipRotates().requires_grad_(False)
    base = nn.functional.normalize(enc(augment.eval_view(colour_images))[0], dim=1)
    for (kind, params), record in zip(augs, records):
        moved = nn.functional.normalize(enc(apply_params(colour_images, params.repeat_interleave(24),
                                                         augment.config))[0], dim=1)
        assert record["type"] == kind
        assert record["wahba_error"] == pytest.approx(float(wahba_error(base, moved, normalized=True)), abs=1e-6)
        cos = (base * moved).sum(1)
        assert record["cos_var"] == pytest.approx(float(cos.var(unbiased=False)), abs=1e-6)
    summary = summarize(records)
    assert summary["n"] == 6 and set(summary["per_type"]) == set(AUGMENTATION_TYPES)
    assert summary["wahba_max"] == max(r["wahba_error"] for r in records)
    gammas = sorted(r["gamma"] for r in records if r["gamma"] is not None)
    assert summary["gamma_median"] == pytest.approx(float(torch.tensor(gammas).double().quantile(0.5)))


def test_image_subset_is_seeded_and_sorted():
    images = torch.zeros(50, 3, 4, 4)
    a, b = image_subset(images, 10, 0), image_subset(images, 10, 0)
    assert torch.equal(a, b) and a.tolist() == sorted(set(a.tolist())) and len(a) == 10
    assert torch.equal(image_subset(images, 500, 0), torch.arange(50))


@pytest.fixture(scope="module")
def s1_run(tmp_path_factory):
    """Two epochs of CARE on digits with d = 2 (the S¹ experiment) and per-epoch snapshots."""
    run = tmp_path_factory.mktemp("runs") / "digits_care_s1"
    cfg = load_config("digits_care", [*TINY, "optim.epochs=2", "run.snapshot_every=1", "model.proj_dim=2"])
    pretrain(cfg, run, data=load_dataset("digits").subset(48, 40))
    return run, cfg


def test_snapshots_hold_the_initial_every_and_last_epoch(s1_run):
    run, cfg = s1_run
    paths = snapshot_paths(run)
    assert [p.name for p in paths] == ["epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt"]
    initial, _ = build_all(cfg, load_dataset("digits").subset(48, 40), torch.device("cpu"))
    snap0 = torch.load(paths[0], weights_only=True)
    assert all(torch.equal(v, snap0["encoder"][k]) for k, v in initial.encoder.state_dict().items())
    final = load_checkpoint(run)["model"]
    snap2 = torch.load(paths[-1], weights_only=True)
    assert snap2["epoch"] == 2 and all(torch.equal(v, final[f"encoder.{k}"]) for k, v in snap2["encoder"].items())


def test_evaluate_writes_evaluation_json_and_self_contained_figures(s1_run, capsys):
    run, _ = s1_run
    assert main(["evaluate", str(run), "--set", "measure.images=32", "--set", "measure.histogram_bins=16"]) == 0
    assert "Wahba error mean" in capsys.readouterr().out
    evaluation = json.loads((run / "evaluation.json").read_text())
    records = evaluation["augmentations"]
    assert len(records) == 20 and [r["type"] for r in records[:6]] == list(AUGMENTATION_TYPES)
    assert all(r["wahba_error"] >= 0 and len(r["cos_hist"]) == 16 and sum(r["cos_hist"]) == 32 for r in records)
    assert evaluation["images"] == 32 and evaluation["proj_dim"] == 2
    assert [p["epoch"] for p in evaluation["training"]] == [0, 1, 2]  # Fig. 5 from the snapshots
    assert evaluation["summary"]["wahba_mean"] > 0 and "skipped" in evaluation["flowers"]
    for name in ("wahba", "gamma", "cosines", "gamma_training"):
        html = (run / evaluation["figures"][name]).read_text()
        assert html.startswith("<!doctype html>") and "plotly.js v" in html  # plotly.js inline
        assert "<script src=" not in html and len(html) > 1_000_000
    assert r"Fig. 6 (S\u00b9 experiment, d = 2)" in (run / "figures" / "cosines.html").read_text()  # S¹, JSON-escaped
    assert not list(run.rglob(".*tmp"))
    # the same seed measures the same augmentations again
    assert main(["evaluate", str(run), "--set", "measure.images=32", "--set", "measure.histogram_bins=16"]) == 0
    again = json.loads((run / "evaluation.json").read_text())["augmentations"]
    assert [r["params"] for r in again] == [r["params"] for r in records]

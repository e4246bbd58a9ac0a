"""kNN monitor and linear probe on hand-made features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import vision_benchmarks.evaluate as evaluate_mod
from vision_benchmarks.augment import AugmentConfig, BatchAugment
from vision_benchmarks.data import ImageData
from vision_benchmarks.evaluate import knn_predict, knn_top1, linear_probe_seeds


def test_knn_votes_are_weighted_by_exp_similarity_over_temperature():
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    query = F.normalize(torch.tensor([[1.0, 0.2]]), dim=1)
    # k = 5: three class-1 votes outnumber two class-0 votes only without the weighting
    assert knn_predict(bank, labels, query, 2, k=5, temperature=0.1).item() == 0
    assert knn_predict(bank, labels, query, 2, k=5, temperature=100.0).item() == 1
    sims = (query @ bank.T).squeeze(0)
    scores = torch.stack([(sims[labels == c] / 0.5).exp().sum() for c in (0, 1)])
    assert knn_predict(bank, labels, query, 2, k=5, temperature=0.5).item() == scores.argmax().item()


class ColourOf(nn.Module):
    """A 'backbone' whose features are the mean colour of the image (plus a constant)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), torch.ones(x.shape[0], 1)], dim=1) * self.scale


def _colour_data(n=40):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (n,), generator=g)
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    images[torch.arange(n), labels] = 200  # class c: channel c lit
    images = images + torch.randint(0, 30, images.shape, generator=g, dtype=torch.uint8)
    return ImageData("toy", images, labels, images, labels, images, labels, ["r", "g", "b"], (0.5,) * 3, (0.25,) * 3)


def test_knn_and_linear_probe_solve_a_separable_problem():
    data = _colour_data()
    augment = BatchAugment(AugmentConfig(size=8, mean=data.mean, std=data.std))
    assert knn_top1(ColourOf(), data, augment, k=5) == 100.0
    probe = {"epochs": 60, "batch_size": 16, "optimizer": "adam", "lr": 0.05, "weight_decay": 0.0, "momentum": 0.9,
             "schedule": "constant", "milestones": [], "gamma": 0.1, "seeds": [0, 1, 2], "augment": False}
    result = linear_probe_seeds(ColourOf(), data, augment, probe)
    assert result["per_seed"] == [100.0, 100.0, 100.0] and result["mean"] == 100.0 and result["std"] == 0.0


def _spy_on_features(monkeypatch):
    """Record every ``backbone_features`` call of the probe: (train_views, features)."""
    calls = []

    def spy(*args, **kwargs):
        feats = real(*args, **kwargs)
        calls.append((kwargs.get("train_views", False), feats.clone()))
        return feats

    real = evaluate_mod.backbone_features
    monkeypatch.setattr(evaluate_mod, "backbone_features", spy)
    return calls


def test_augmented_linear_probe_trains_on_fresh_views_every_epoch_and_still_solves_the_problem(monkeypatch):
    data = _colour_data()
    augment = BatchAugment(AugmentConfig(size=8, mean=data.mean, std=data.std))
    probe = {"epochs": 4, "batch_size": 16, "optimizer": "adam", "lr": 0.05, "weight_decay": 0.0, "momentum": 0.9,
             "schedule": "constant", "milestones": [], "gamma": 0.1, "seeds": [0], "augment": True}
    calls = _spy_on_features(monkeypatch)
    result = linear_probe_seeds(ColourOf(), data, augment, probe)
    # seeded, so deterministic: augmented views of a colour problem keep it separable
    assert result["mean"] >= 90.0
    views = [feats for train_views, feats in calls if train_views]
    assert len(calls) == 1 + probe["epochs"] and len(views) == probe["epochs"]  # the test set once, eval view
    assert not calls[0][0] and calls[0][1].shape == (data.test.shape[0], 4)
    for k, a in enumerate(views):  # one fresh augmented view of the training images per epoch
        assert a.shape == (data.memory.shape[0], 4)
        assert all(not torch.allclose(a, b) for b in views[k + 1:])
    eval_view = evaluate_mod.backbone_features(ColourOf(), data.memory, augment, normalize=False)
    assert not torch.allclose(views[0], eval_view)  # augmented, not the evaluation transform
    calls.clear()
    linear_probe_seeds(ColourOf(), data, augment, {**probe, "augment": False})
    assert [train_views for train_views, _ in calls] == [False, False]  # un-augmented: features once

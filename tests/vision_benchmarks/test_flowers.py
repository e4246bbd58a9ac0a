"""Flowers-102 colour-jitter retrieval (Fig. 4) on small synthetic files in the real on-disk
format (``flowers-102/jpg/image_XXXXX.jpg``, ``imagelabels.mat``, ``setid.mat``), read by
torchvision's ``Flowers102`` with only its MD5 check bypassed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch import nn

from vision_benchmarks.augment import AugmentConfig, BatchAugment
from vision_benchmarks.data import DatasetNotFound
from vision_benchmarks.flowers import colour_jitter_retrieval, load_flowers102, mosaic

N_IMAGES = 18


@pytest.fixture
def flowers_root(tmp_path, monkeypatch):
    """18 JPEGs of varied sizes and colours; ids 1-6 train, 7-10 val, 11-18 test."""
    import torchvision.datasets.flowers102 as module

    monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    base = tmp_path / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for image_id in range(1, N_IMAGES + 1):
        h, w = int(rng.integers(40, 70)), int(rng.integers(40, 70))
        colour = rng.integers(0, 256, 3)
        pixels = np.clip(colour + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(base / "jpg" / f"image_{image_id:05d}.jpg", quality=95)
    labels = (np.arange(N_IMAGES) % 102 + 1).reshape(1, -1)  # 1-based, as the real file
    scipy.io.savemat(base / "imagelabels.mat", {"labels": labels})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.arange(1, 7).reshape(1, -1),
                                          "valid": np.arange(7, 11).reshape(1, -1),
                                          "tstid": np.arange(11, N_IMAGES + 1).reshape(1, -1)})
    return tmp_path


class MeanColour(nn.Module):
    """(h, z) = the mean colour of the image: maximally colour-sensitive."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        h = x.mean(dim=(2, 3)) * self.scale
        return h, h


def test_flowers102_split_is_read_resized_and_cached(flowers_root):
    images, labels = load_flowers102(flowers_root, "test", 16)
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [(i - 1) % 102 for i in range(11, 19)]  # 0-based, as torchvision
    cached = list((flowers_root / "vision_benchmarks_cache").glob("flowers102-test-16-*.pt"))
    assert len(cached) == 1
    again, _ = load_flowers102(flowers_root, "test", 16)
    assert torch.equal(images, again)
    first, _ = load_flowers102(flowers_root, "train", 16, max_images=4)
    assert first.shape[0] == 4


def test_missing_flowers_says_how_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFound, match="flowers_download"):
        load_flowers102(tmp_path, "test", 16)


def test_jitter_retrieval_excludes_the_query_and_reports_overlap(flowers_root):
    gallery, _ = load_flowers102(flowers_root, "test", 16)
    augment = BatchAugment(AugmentConfig(size=16, mean=(0.5,) * 3, std=(0.25,) * 3))
    result = colour_jitter_retrieval(MeanColour(), gallery, augment, queries=3, k=4, seed=0)
    assert len(result["queries"]) == 3 and result["gallery_size"] == 8
    for q, plain, jittered in zip(result["queries"], result["neighbours_plain"], result["neighbours_jittered"]):
        assert q not in plain and q not in jittered and len(set(plain)) == 4
    assert all(0 <= o <= 1 for o in result["overlap"]) and all(j["jitter"] for j in result["jitter"])
    assert not any(j["flip"] or j["grayscale"] or j["blur"] for j in result["jitter"])
    # with a mean-colour embedding the plain query's neighbours are the nearest L2-normalised
    # mean colours (of the normalised image, as the encoder sees it)
    colours = nn.functional.normalize((gallery.float().div(255).mean(dim=(2, 3)) - 0.5) / 0.25, dim=1)
    for q, plain in zip(result["queries"], result["neighbours_plain"]):
        dist = (colours - colours[q]).norm(dim=1)
        dist[q] = float("inf")
        assert set(plain) == set(dist.topk(4, largest=False).indices.tolist())
    grid = mosaic(result)
    assert grid.shape[-1] == 3 and grid.dtype == torch.uint8
    assert grid.shape[0] == 3 * (2 * 16 + 4)  # per query two rows and a gap


def test_evaluate_runs_the_retrieval_when_flowers_root_is_set(flowers_root, tmp_path):
    from vision_benchmarks.cli import main
    from vision_benchmarks.config import load_config
    from vision_benchmarks.data import load_dataset
    from vision_benchmarks.train import pretrain

    run = tmp_path / "run"
    cfg = load_config("digits_simclr", ["run.device=cpu", "run.progress=false", "run.channels_last=false",
                                        "model.width=4", "optim.batch_size=16", "optim.epochs=1", "knn.k=5",
                                        "method.n_split=4", "method.equiv_batch_size=0"])
    pretrain(cfg, run, data=load_dataset("digits").subset(16, 24))
    assert main(["evaluate", str(run), "--set", f"measure.flowers_root={json.dumps(str(flowers_root))}",
                 "--set", "measure.flowers_queries=2", "--set", "measure.augmentations=6"]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["flowers"]["gallery_size"] == 8 and len(evaluation["flowers"]["overlap"]) == 2
    html = (run / evaluation["figures"]["flowers_retrieval"]).read_text()
    assert "plotly.js v" in html and "Fig. 4" in html

"""Flowers-102 colour-jitter retrieval (Fig. 4) on the small synthetic Flowers-102 folder of
``conftest.flowers_root`` (real on-disk format, read by torchvision's ``Flowers102``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from vision_benchmarks.augment import AugmentConfig, BatchAugment
from vision_benchmarks.data import DatasetNotFound
from vision_benchmarks.flowers import colour_jitter_retrieval, load_flowers102, mosaic

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])


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


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_jitter_retrieval_excludes_the_query_and_reports_overlap(flowers_root, device):
    gallery, _ = load_flowers102(flowers_root, "test", 16)
    augment = BatchAugment(AugmentConfig(size=16, mean=(0.5,) * 3, std=(0.25,) * 3))
    result = colour_jitter_retrieval(MeanColour().to(device), gallery, augment, queries=3, k=4, seed=0)
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

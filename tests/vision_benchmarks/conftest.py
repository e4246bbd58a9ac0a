"""Shared fixtures: one torch thread per test process (the CI machine's cores are shared, and
oversubscribed intra-op threads slow small-tensor tests by orders of magnitude), and a small
Flowers-102 folder in the real on-disk format (``flowers-102/jpg/image_XXXXX.jpg``,
``imagelabels.mat``, ``setid.mat``), read by torchvision's ``Flowers102`` with only its MD5
check bypassed."""

import os

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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

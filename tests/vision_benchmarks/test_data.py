"""Data sets: torchvision's real loaders read small synthetic files written in each data
set's on-disk format (only the md5 checks are bypassed), the uint8 cache is exact and
keyed by its sources, and missing data gives the command that downloads it."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.stl10 as tv_stl10

from data_pipeline.atomic_files import write_torch_atomic
from vision_benchmarks import data as D


@pytest.fixture
def no_checksums(monkeypatch):
    """Bypass only the archive/file md5 checks; everything else is torchvision's code."""
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_stl10.STL10, "_check_integrity", lambda self: True)


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 4, test: int = 5, seed: int = 0):
    """``cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta`` as the real archive:
    dicts with ``data`` (n, 3072) uint8 rows in CHW order and ``labels`` lists."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = [], []
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        _pickle(folder / name, {"batch_label": name, "data": x.reshape(n, -1), "labels": y, "filenames": []})
        images.append(x)
        labels.append(y)
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    return images, labels


def write_cifar100(root: Path, train: int = 6, test: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for name, n in (("train", train), ("test", test)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 100, n).tolist()
        _pickle(folder / name, {"data": x.reshape(n, -1), "fine_labels": y, "coarse_labels": [0] * n})
        out[name] = (x, y)
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": []})
    return out


def write_stl10(root: Path, train: int = 3, unlabeled: int = 2, test: int = 2, seed: int = 0):
    """``stl10_binary/*_X.bin`` (uint8, each image stored column-major: (3, W, H)) and
    ``*_y.bin`` (labels 1..10), ``class_names.txt``."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    out = {}
    for name, n in (("train", train), ("unlabeled", unlabeled), ("test", test)):
        x = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        x.transpose(0, 1, 3, 2).tofile(folder / f"{name}_X.bin")
        y = rng.integers(1, 11, n).astype(np.uint8)
        if name != "unlabeled":
            y.tofile(folder / f"{name}_y.bin")
        out[name] = (x, y.astype(np.int64) - 1)
    (folder / "class_names.txt").write_text("\n".join(f"stl{i}" for i in range(10)) + "\n")
    return out


def test_cifar10_is_read_by_torchvision_into_exact_uint8_tensors(tmp_path, no_checksums):
    images, labels = write_cifar10(tmp_path)
    d = D.load_dataset("cifar10", tmp_path)
    assert d.train.dtype == torch.uint8 and d.train.shape == (20, 3, 32, 32) and d.test.shape == (5, 3, 32, 32)
    assert torch.equal(d.train, torch.from_numpy(np.concatenate(images[:5])))
    assert torch.equal(d.test, torch.from_numpy(images[5]))
    assert d.train_labels.tolist() == sum(labels[:5], []) and d.test_labels.tolist() == labels[5]
    assert d.memory is d.train and d.classes[3] == "class3" and d.mean == D.STATS["cifar10"][0]


def test_cifar100_uses_fine_labels(tmp_path, no_checksums):
    written = write_cifar100(tmp_path)
    d = D.load_dataset("cifar100", tmp_path)
    assert torch.equal(d.train, torch.from_numpy(written["train"][0]))
    assert d.train_labels.tolist() == written["train"][1] and d.num_classes == 100


def test_stl10_pretrains_on_train_plus_unlabeled_and_probes_on_train(tmp_path, no_checksums):
    written = write_stl10(tmp_path)
    d = D.load_dataset("stl10", tmp_path)
    assert d.train.shape == (5, 3, 96, 96)
    assert torch.equal(d.train[:3], torch.from_numpy(written["train"][0]))
    assert torch.equal(d.train[3:], torch.from_numpy(written["unlabeled"][0]))
    assert d.train_labels.tolist() == written["train"][1].tolist() + [-1, -1]
    assert torch.equal(d.memory, torch.from_numpy(written["train"][0]))
    assert d.test_labels.tolist() == written["test"][1].tolist() and d.classes[0] == "stl0"


def test_cache_is_written_once_atomically_and_reused(tmp_path, no_checksums, monkeypatch):
    write_cifar10(tmp_path)
    first = D.load_dataset("cifar10", tmp_path)
    caches = list((tmp_path / D.CACHE_DIR).glob("cifar10-*.pt"))
    assert len(caches) == 1 and not list((tmp_path / D.CACHE_DIR).glob(".*tmp"))
    monkeypatch.setattr(D, "_decode_any", lambda *a, **k: pytest.fail("decoded again despite the cache"))
    second = D.load_dataset("cifar10", tmp_path)
    assert torch.equal(first.train, second.train) and first.classes == second.classes


def test_changed_source_files_give_a_new_cache_key(tmp_path, no_checksums):
    write_cifar10(tmp_path)
    D.load_dataset("cifar10", tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(batch, "rb") as f:
        entry = pickle.load(f)
    entry["data"][0, :] = 7
    _pickle(batch, entry)
    d = D.load_dataset("cifar10", tmp_path)
    assert (d.test[0] == 7).all()
    assert len(list((tmp_path / D.CACHE_DIR).glob("cifar10-*.pt"))) == 2


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_missing_data_names_the_download_command(tmp_path, name):
    with pytest.raises(D.DatasetNotFound, match=f"vision-benchmarks download {name} --root"):
        D.load_dataset(name, tmp_path / "nowhere")


def test_download_flag_is_passed_to_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_download(self):
        calls.append(type(self).__name__)
        write_cifar10(Path(self.root))
        monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: False)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_cifar.CIFAR10, "download", fake_download)
    d = D.load_dataset("cifar10", tmp_path, download=True)
    assert calls == ["CIFAR10"] and d.train.shape[0] == 20


def test_digits_are_32x32_rgb_uint8_with_a_stratified_split():
    d = D.load_dataset("digits")
    assert d.train.shape == (1437, 3, 32, 32) and d.test.shape == (360, 3, 32, 32)
    assert d.train.dtype == torch.uint8 and torch.equal(d.train[:, 0], d.train[:, 2])
    assert sorted(d.test_labels.unique().tolist()) == list(range(10))
    counts = torch.bincount(d.test_labels)
    assert counts.min() >= 35 and counts.max() <= 37
    assert 0 < d.mean[0] < 1 and 0 < d.std[0] < 1


def test_imagenet100_class_list_has_100_unique_wordnet_ids():
    classes = D.imagenet100_classes()
    assert len(classes) == len(set(classes)) == 100
    assert all(c.startswith("n") and len(c) == 9 and c[1:].isdigit() for c in classes)


def test_subset_and_to_keep_shared_roles_shared():
    d = D.load_dataset("digits").subset(train=100, test=10)
    assert d.train.shape[0] == 100 and d.test.shape[0] == 10
    moved = d.to("cpu")
    assert moved.memory is moved.train


@pytest.fixture
def restore_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_saved_files_get_the_mode_of_the_umask_not_0600(tmp_path, no_checksums, restore_umask):
    os.umask(0o022)  # a shared data.root: caches and checkpoints readable by the group and others
    write_cifar10(tmp_path)
    D.load_dataset("cifar10", tmp_path)
    (cache,) = (tmp_path / D.CACHE_DIR).glob("cifar10-*.pt")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o644
    os.umask(0o027)
    path = tmp_path / "run" / "checkpoint.pt"
    write_torch_atomic(path, {"x": torch.arange(3)})  # what checkpoints are written with
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary file left

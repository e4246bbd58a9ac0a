"""Image data sets as whole uint8 tensors, decoded once and cached, held on the device.

Every data set becomes an :class:`ImageData`: three uint8 ``(N, 3, H, W)`` tensors with
int64 labels, as the release uses them:

- ``train``: what pretraining sees (STL10: ``train+unlabeled``, labels −1 for unlabeled);
- ``memory``: the labelled training images of the kNN monitor and the linear probe;
- ``test``: the evaluation images.

CIFAR10, CIFAR100 and STL10 are read by torchvision's own dataset classes (so the files
must be in their real on-disk layout; ``download=True`` fetches them), decoded once and
written to ``<root>/vision_benchmarks_cache/<name>-<key>.pt`` atomically. ``key`` hashes
the source files' names, sizes and mtimes plus :data:`CACHE_VERSION`, so a changed source
gives a new cache and a stale one is never reused. ``digits`` (scikit-learn's bundled
8×8 digits upsampled to 32×32 RGB) needs no files and is for CPU runs. ``imagenet100``
is not cached: its roles are :class:`~vision_benchmarks.imagenet.FolderImages` over a
user's ImageNet folder (JPEGs decoded on demand; pretraining batches come from
:class:`~vision_benchmarks.imagenet.TrainLoader`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from data_pipeline.atomic_files import write_torch_atomic

from vision_benchmarks.imagenet import CLASSES_FILE as IMAGENET100_CLASSES_FILE, imagenet100_classes  # noqa: F401

CACHE_VERSION = 1
CACHE_DIR = "vision_benchmarks_cache"

#: Per-channel mean/std used by the release's Normalize (digits: measured on its train split).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "stl10": ((0.4406, 0.4273, 0.3858), (0.2312, 0.2265, 0.2237)),
    "imagenet100": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
DATASETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet100")


class DatasetNotFound(FileNotFoundError):
    """A data set's files are missing; the message says how to fetch them."""


@dataclass
class ImageData:
    """A data set as uint8 tensors (see the module docstring)."""

    name: str
    train: Tensor
    train_labels: Tensor
    memory: Tensor
    memory_labels: Tensor
    test: Tensor
    test_labels: Tensor
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device) -> "ImageData":
        """A copy with every tensor on ``device`` (tensors shared by two roles stay shared)."""
        moved: dict[int, Tensor] = {}

        def move(t: Tensor) -> Tensor:
            if id(t) not in moved:
                moved[id(t)] = t.to(device)
            return moved[id(t)]

        return replace(
            self,
            train=move(self.train), train_labels=move(self.train_labels),
            memory=move(self.memory), memory_labels=move(self.memory_labels),
            test=move(self.test), test_labels=move(self.test_labels),
        )

    def subset(self, train: int | None = None, test: int | None = None) -> "ImageData":
        """The first ``train`` / ``test`` images of each role (for smoke runs)."""
        cut = lambda t, k: t if k is None else (t[:k] if isinstance(t, Tensor) else t.first(k))  # noqa: E731
        shared = self.memory is self.train
        images, labels = cut(self.train, train), cut(self.train_labels, train)
        return replace(
            self,
            train=images, train_labels=labels,
            memory=images if shared else cut(self.memory, train),
            memory_labels=labels if shared else cut(self.memory_labels, train),
            test=cut(self.test, test), test_labels=cut(self.test_labels, test),
        )


# --------------------------------------------------------------------------- helpers


def _hwc_to_chw(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def _labels(values) -> Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.int64)


def _source_key(name: str, folder: Path) -> str:
    """Hash of the source files (relative name, size, mtime) and the cache version."""
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    blob = json.dumps([CACHE_VERSION, name, entries]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _not_found(name: str, root: Path) -> DatasetNotFound:
    return DatasetNotFound(
        f"{name} was not found under {str(root)!r}. Download it with\n"
        f"    vision-benchmarks download {name} --root {root}\n"
        f"or pass --set data.download=true to pretrain."
    )


# --------------------------------------------------------------------------- data sets


def load_digits_data() -> ImageData:
    """scikit-learn's 1,797 8×8 digits (0..16) → 32×32 RGB uint8 (bilinear upsampling),
    stratified 80/20 train/test split with a fixed seed; mean/std of the train split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from vision_benchmarks.geometric import resize

    bunch = load_digits()
    small = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    big = (resize(small, 32) * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = _labels(bunch.target)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=0, stratify=bunch.target
    )
    train_idx, test_idx = torch.as_tensor(np.sort(train_idx)), torch.as_tensor(np.sort(test_idx))
    train = big[train_idx]
    pixels = train.float().div(255)
    mean = tuple(round(v, 4) for v in pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(round(v, 4) for v in pixels.std(dim=(0, 2, 3)).tolist())
    return ImageData(
        "digits", train, labels[train_idx], train, labels[train_idx], big[test_idx], labels[test_idx],
        [str(d) for d in range(10)], mean, std,
    )


def _decode_cifar(cls, root: Path, download: bool) -> dict:
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=False)
    except RuntimeError as error:
        if "not found" in str(error).lower():
            raise _not_found(cls.__name__.lower(), root) from None
        raise
    return {
        "train": _hwc_to_chw(train.data), "train_labels": _labels(train.targets),
        "test": _hwc_to_chw(test.data), "test_labels": _labels(test.targets),
        "classes": list(train.classes),
    }


def _decode_stl10(root: Path, download: bool) -> dict:
    from torchvision.datasets import STL10

    try:
        pretrain = STL10(root=str(root), split="train+unlabeled", download=download)
        labelled = STL10(root=str(root), split="train")
        test = STL10(root=str(root), split="test")
    except RuntimeError as error:
        if "not found" in str(error).lower():
            raise _not_found("stl10", root) from None
        raise
    return {
        "train": torch.from_numpy(np.ascontiguousarray(pretrain.data)),
        "train_labels": _labels(pretrain.labels),
        "memory": torch.from_numpy(np.ascontiguousarray(labelled.data)),
        "memory_labels": _labels(labelled.labels),
        "test": torch.from_numpy(np.ascontiguousarray(test.data)), "test_labels": _labels(test.labels),
        "classes": list(getattr(labelled, "classes", [str(i) for i in range(10)])),
    }


def _source_folder(name: str, root: Path) -> Path:
    return {
        "cifar10": root / "cifar-10-batches-py",
        "cifar100": root / "cifar-100-python",
        "stl10": root / "stl10_binary",
    }[name]


def load_dataset(name: str, root: str | Path = "./data", download: bool = False, *,
                 store_size: int = 256, image_size: int = 224, workers: int = 0, cache: bool = True) -> ImageData:
    """Load ``name`` (one of :data:`DATASETS`) as uint8 tensors on the CPU (ImageNet100:
    as :class:`~vision_benchmarks.imagenet.FolderImages`, decoded on demand).

    Args:
        name: data set name.
        root: folder holding the data set in torchvision's layout (ignored for digits).
        download: let torchvision download CIFAR/STL10 when missing.
        store_size, image_size: ImageNet100 only: evaluation views are
            ``Resize(store_size)``, ``CenterCrop(image_size)``.
        workers: ImageNet100 only: decoding processes of the evaluation passes.
        cache: read/write the decoded-tensor cache under ``root``.
    Raises:
        DatasetNotFound: with the command that downloads the data.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}")
    if name == "digits":
        return load_digits_data()
    if name == "imagenet100":
        from vision_benchmarks.imagenet import load_imagenet100

        return load_imagenet100(Path(root), store_size=store_size, size=image_size, workers=workers)
    root = Path(root)
    source = _source_folder(name, root)
    if not source.is_dir() and not download:
        raise _not_found(name, root)
    if cache and source.is_dir():
        cache_path = _cache_path(name, root, source)
        if cache_path.is_file():
            return _to_image_data(name, torch.load(cache_path, weights_only=True))
    blob = _decode_any(name, root, download)
    if cache:
        write_torch_atomic(_cache_path(name, root, source), blob)
    return _to_image_data(name, blob)


def _cache_path(name: str, root: Path, source: Path) -> Path:
    return root / CACHE_DIR / f"{name}-{_source_key(name, source)}.pt"


def _decode_any(name: str, root: Path, download: bool) -> dict:
    from torchvision.datasets import CIFAR10, CIFAR100

    if name == "cifar10":
        return _decode_cifar(CIFAR10, root, download)
    if name == "cifar100":
        return _decode_cifar(CIFAR100, root, download)
    return _decode_stl10(root, download)


def _to_image_data(name: str, blob: dict) -> ImageData:
    memory = blob.get("memory", blob["train"])
    memory_labels = blob.get("memory_labels", blob["train_labels"])
    mean, std = STATS[name]
    return ImageData(
        name, blob["train"], blob["train_labels"], memory, memory_labels, blob["test"], blob["test_labels"],
        list(blob["classes"]), mean, std,
    )


def download_dataset(name: str, root: str | Path) -> None:
    """Download (and verify) CIFAR10/CIFAR100/STL10 with torchvision, then build the cache."""
    if name not in ("cifar10", "cifar100", "stl10"):
        raise ValueError(f"{name} cannot be downloaded automatically; see the README of vision_benchmarks")
    load_dataset(name, root, download=True)

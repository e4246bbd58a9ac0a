"""ImageNet100 from a user's ImageNet folder, decoded from JPEG by DataLoader workers.

Layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (torchvision's
``ImageFolder``), restricted to the 100 CMC classes of ``imagenet100_classes.txt``;
labels index the sorted classes present under ``train``.

Pretraining (:class:`TrainLoader`): one DataLoader item is one batch, decoded by one
worker (PIL, as the release's ``ImageFolder`` + transforms) into a :class:`DecodedBatch`:

- ``views``: two uint8 ``(n, 3, size, size)`` tensors, each image's own
  ``RandomResizedCrop(size, scale, ratio)`` of the full-size image: the box is drawn
  with torchvision's ``get_params`` distribution (:func:`~vision_benchmarks.augment.sample_crops`)
  from a generator seeded by (run seed, epoch, rank, step), so the crops do not depend
  on the number of workers, and cropped and resized by PIL (bilinear, antialiased) as
  the release does;
- ``equiv``: for the first E images (the equivariance batch), ``Resize(store_size)``
  (shorter side) then ``CenterCrop(side)``: ``side = size`` when ``augment.equiv_crop``
  is false (the release's ``Resize(256), CenterCrop(224)``: no crop in its equivariance
  views), else ``side = store_size`` and the GPU crops one box per chunk to ``size``.

Flip, colour jitter, grayscale, blur and normalisation then run batched on the device
(:class:`~vision_benchmarks.augment.BatchAugment`). Evaluation images
(:class:`FolderImages`) are the release's ``Resize(store_size), CenterCrop(size)``,
decoded on demand, never cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vision_benchmarks.augment import sample_crops

CLASSES_FILE = Path(__file__).with_name("imagenet100_classes.txt")


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of ImageNet100 (the CMC subset, Tian et al. 2019)."""
    return CLASSES_FILE.read_text().split()


def folder_samples(folder: Path, classes: list[str] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """``(path, label)`` of every image of ``folder/<wnid>/`` for the ImageNet100 classes
    present (or the given ``classes``, which fix the labels), and the class list."""
    from torchvision.datasets import ImageFolder

    wanted = imagenet100_classes()

    class Subset100(ImageFolder):
        def find_classes(self, directory):
            if classes is not None:
                return list(classes), {c: i for i, c in enumerate(classes)}
            present = {e.name for e in os.scandir(directory) if e.is_dir()}
            found = [c for c in sorted(wanted) if c in present]
            if not found:
                raise FileNotFoundError(f"none of the 100 ImageNet100 class folders is in {directory}")
            return found, {c: i for i, c in enumerate(found)}

    dataset = Subset100(str(folder), loader=lambda p: p, allow_empty=classes is not None)
    return dataset.samples, dataset.classes


def load_rgb(path: str):
    """The image as an RGB PIL image (torchvision's ``pil_loader``)."""
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def crop_view(image, box, size: int) -> Tensor:
    """uint8 ``(3, size, size)``: the box ``(top, left, h, w)`` of a PIL image resized by
    PIL (bilinear, antialiased), as ``transforms.RandomResizedCrop`` does."""
    from torchvision.transforms.v2 import functional as TF

    top, left, height, width = box
    return TF.pil_to_tensor(TF.resized_crop(image, top, left, height, width, [size, size], antialias=True))


def centre_view(image, store_size: int, side: int) -> Tensor:
    """uint8 ``(3, side, side)``: ``Resize(store_size)`` (shorter side) then ``CenterCrop(side)``."""
    from torchvision.transforms.v2 import functional as TF

    return TF.pil_to_tensor(TF.center_crop(TF.resize(image, [store_size], antialias=True), [side, side]))


@dataclass
class DecodedBatch:
    """A pretraining batch as the workers decode it (see the module docstring)."""

    views: tuple[Tensor, Tensor]
    equiv: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def _map(self, fn) -> "DecodedBatch":
        return DecodedBatch((fn(self.views[0]), fn(self.views[1])), fn(self.equiv), fn(self.labels))

    def to(self, device, non_blocking: bool = False) -> "DecodedBatch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "DecodedBatch":  # called by the DataLoader's pin_memory thread
        return self._map(lambda t: t.pin_memory())


class FolderImages(Dataset):
    """The evaluation views of an image folder as a read-only, tensor-like uint8
    ``(N, 3, size, size)`` set: indexing decodes (``Resize(store_size)``,
    ``CenterCrop(size)``); :meth:`batches` decodes in order with ``workers`` processes."""

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, samples: list[tuple[str, int]], store_size: int, size: int, workers: int = 0):
        self.samples, self.store_size, self.size, self.workers = list(samples), store_size, size, workers

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.samples), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def first(self, k: int) -> "FolderImages":
        return FolderImages(self.samples[:k], self.store_size, self.size, self.workers)

    def to(self, *args, **kwargs) -> "FolderImages":
        return self  # decoded on the CPU; callers move the decoded batches

    def __getitem__(self, index) -> Tensor:
        if isinstance(index, (int, np.integer)):
            return centre_view(load_rgb(self.samples[index][0]), self.store_size, self.size)
        rows = range(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).reshape(-1).tolist()
        out = torch.empty(len(rows), 3, self.size, self.size, dtype=torch.uint8)
        for k, row in enumerate(rows):
            out[k] = self[int(row)]
        return out

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        """The images in order, ``batch_size`` at a time, decoded by ``workers`` processes."""
        yield from DataLoader(self, batch_size=batch_size, shuffle=False, num_workers=self.workers)


class _BatchDecoder(Dataset):
    """Item ``(indices, seed, n_equiv)`` → the :class:`DecodedBatch` of those images."""

    def __init__(self, samples, size: int, scale, ratio, store_size: int, equiv_side: int):
        self.samples, self.size, self.scale, self.ratio = samples, size, tuple(scale), tuple(ratio)
        self.store_size, self.equiv_side = store_size, equiv_side

    def __getitem__(self, key) -> DecodedBatch:
        indices, seed, n_equiv = key
        generator = torch.Generator().manual_seed(seed)
        n, size, side = len(indices), self.size, self.equiv_side
        views = torch.empty(2, n, 3, size, size, dtype=torch.uint8)
        equiv = torch.empty(n_equiv, 3, side, side, dtype=torch.uint8)
        labels = torch.empty(n, dtype=torch.int64)
        for k, index in enumerate(indices):
            path, labels[k] = self.samples[index]
            image = load_rgb(path)
            for v, box in enumerate(sample_crops(2, image.height, image.width, self.scale, self.ratio,
                                                 generator).tolist()):
                views[v, k] = crop_view(image, box, size)
            if k < n_equiv:
                equiv[k] = centre_view(image, self.store_size, side)
        return DecodedBatch((views[0], views[1]), equiv, labels)


def batch_seed(seed: int, epoch: int, rank: int, step: int) -> int:
    """The crop generator's seed of one batch (independent of the worker that decodes it)."""
    return int(np.random.SeedSequence([seed, epoch, rank, step]).generate_state(1, np.uint64)[0])


class TrainLoader:
    """Pretraining batches of a :class:`FolderImages` as :class:`DecodedBatch` es, decoded
    by ``workers`` persistent processes (0: in the calling process).

    Args:
        images: the training images (their samples and ``store_size`` are used).
        size, scale, ratio: the RandomResizedCrop of the invariance views.
        n_equiv: images of each batch that also get the equivariance source (0: none).
        equiv_side: side of the equivariance source (``size`` or ``store_size``).
        seed, rank: with the epoch and step, seed the crops of each batch.
    """

    def __init__(self, images: FolderImages, *, size: int, scale, ratio, n_equiv: int, equiv_side: int,
                 workers: int, seed: int, rank: int = 0, pin_memory: bool = False):
        self.n_equiv, self.seed, self.rank = n_equiv, seed, rank
        self.keys = _Keys()  # the sampler; it must not refer back to the loader (a reference
        # cycle delays the persistent workers' shutdown to the cyclic GC, which stalls it)
        decoder = _BatchDecoder(images.samples, size, scale, ratio, images.store_size, equiv_side)
        self.loader = DataLoader(decoder, batch_size=None, sampler=self.keys, num_workers=workers,
                                 pin_memory=pin_memory, persistent_workers=workers > 0)

    def epoch(self, batches: Tensor, epoch: int) -> Iterator[DecodedBatch]:
        """The decoded batches of one epoch; ``batches`` is ``(steps, n)`` image indices."""
        self.keys.items = [(tuple(row.tolist()), batch_seed(self.seed, epoch, self.rank, step), self.n_equiv)
                           for step, row in enumerate(batches)]
        return iter(self.loader)


class _Keys:
    """The :class:`TrainLoader`'s sampler: the current epoch's batch keys."""

    def __init__(self):
        self.items: list = []

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def load_imagenet100(root: Path, *, store_size: int, size: int, workers: int = 0):
    """ImageNet100 as an :class:`~vision_benchmarks.data.ImageData` of :class:`FolderImages`."""
    from vision_benchmarks.data import STATS, DatasetNotFound, ImageData

    root = Path(root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetNotFound(
            f"imagenet100 was not found under {str(root)!r}: it is read from your ImageNet copy, laid out as\n"
            f"    {root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG\n"
            f"(class folders for val too; the 100 wnids are in {CLASSES_FILE}). Pass --set data.root=PATH."
        )
    train_samples, classes = folder_samples(root / "train")
    test_samples, _ = folder_samples(root / "val", classes)
    train = FolderImages(train_samples, store_size, size, workers)
    test = FolderImages(test_samples, store_size, size, workers)
    labels, mean, std = train.labels, *STATS["imagenet100"]
    return ImageData("imagenet100", train, labels, train, labels, test, test.labels, classes, mean, std)

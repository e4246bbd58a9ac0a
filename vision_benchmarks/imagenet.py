"""ImageNet100 from a user's ImageNet folder, decoded from JPEG by DataLoader workers.

Layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (torchvision's
``ImageFolder``), restricted to the 100 CMC classes of ``imagenet100_classes.txt``;
labels index the sorted classes. Every class needs train and val images (the stock flat
ILSVRC ``val/`` is an error); a run on fewer classes (tests, smoke runs) lists them in
``root/imagenet100_subset.txt`` (:data:`SUBSET_FILE`).

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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vision_benchmarks.augment import sample_crops

CLASSES_FILE = Path(__file__).with_name("imagenet100_classes.txt")
#: In ``data.root``: the wnids to read instead of all 100 (tests, smoke runs; see wanted_classes).
SUBSET_FILE = "imagenet100_subset.txt"


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of ImageNet100 (the CMC subset, Tian et al. 2019)."""
    return CLASSES_FILE.read_text().split()


def folder_samples(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
    """``(path, label)`` of every image of ``folder/<wnid>/`` for the given ``classes``
    (label: index in ``classes``); a class without a folder has no samples."""
    from torchvision.datasets import ImageFolder

    class Listed(ImageFolder):
        def find_classes(self, directory):
            return list(classes), {c: i for i, c in enumerate(classes)}

    return Listed(str(folder), loader=lambda p: p, allow_empty=True).samples


def wanted_classes(root: Path) -> list[str]:
    """The sorted wnids a run reads: the 100 of :data:`CLASSES_FILE`, or the subset listed
    in ``root/`` :data:`SUBSET_FILE` (an explicit opt-in for tests and smoke runs)."""
    classes = imagenet100_classes()
    listing = Path(root) / SUBSET_FILE
    if not listing.is_file():
        return sorted(classes)
    subset = listing.read_text().split()
    unknown = [c for c in subset if c not in classes]
    if not subset or unknown:
        raise ValueError(f"{listing} must list ImageNet100 wnids (those of {CLASSES_FILE}); "
                         + (f"{len(unknown)} are not, e.g. {', '.join(unknown[:5])}" if unknown else "it is empty"))
    print(f"imagenet100: only the {len(set(subset))} classes listed in {listing}", file=sys.stderr)
    return sorted(set(subset))


def _require_images(classes: list[str], samples, folder: Path, subset_hint: bool) -> None:
    """Raise :class:`~vision_benchmarks.data.DatasetNotFound` when some of ``classes`` have
    no image under ``folder``, naming how many and a few of them."""
    from vision_benchmarks.data import DatasetNotFound

    missing = sorted(set(classes) - {classes[label] for _, label in samples})
    if missing:
        hint = (f"; to use only some classes on purpose (tests, smoke runs), list them in "
                f"{folder.parent / SUBSET_FILE}" if subset_hint else "")
        raise DatasetNotFound(f"imagenet100: only {len(classes) - len(missing)} of the {len(classes)} classes have "
                              f"images in {folder}/<wnid>/; {len(missing)} missing, e.g. {', '.join(missing[:5])}{hint}")


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
    classes = wanted_classes(root)
    train_samples = folder_samples(root / "train", classes)
    _require_images(classes, train_samples, root / "train", subset_hint=True)
    test_samples = folder_samples(root / "val", classes)
    if not test_samples:
        flat = sum(1 for e in os.scandir(root / "val") if e.is_file() and e.name.lower().endswith((".jpeg", ".jpg")))
        raise DatasetNotFound(
            f"imagenet100: no validation images in {root / 'val'}/<wnid>/ ({flat} JPEG files directly in it). "
            "The stock ILSVRC val/ is flat (val/ILSVRC2012_val_00000001.JPEG); sort val/ into <wnid>/ folders "
            "first, e.g. with the valprep.sh of the PyTorch ImageNet example"
        )
    _require_images(classes, test_samples, root / "val", subset_hint=False)
    train = FolderImages(train_samples, store_size, size, workers)
    test = FolderImages(test_samples, store_size, size, workers)
    labels, mean, std = train.labels, *STATS["imagenet100"]
    return ImageData("imagenet100", train, labels, train, labels, test, test.labels, classes, mean, std)

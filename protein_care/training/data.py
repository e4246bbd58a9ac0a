"""The trainer's data path: clouds packed into three flat tensors, gathered into a
batch with a few tensor ops, in a deterministic order.

The PyG ``Dataset`` (:mod:`protein_care.data`) is the user-facing view of a store; a
training step does not build per-item ``Data`` objects. :class:`PackedClouds` holds the
training split as ``coords`` (N, 3) float32, ``features`` (N,) long and ``offsets``
(n + 1,) (cloud i is ``coords[offsets[i]:offsets[i+1]]``), on the training device when it
fits, and :meth:`PackedClouds.gather` returns ``(pos, x, batch)`` for a list of clouds
with one ``repeat_interleave`` and one index.

Order: :func:`epoch_batches` takes each epoch's permutation from a
``DistributedSampler`` seeded with ``(seed, epoch)`` (shards per rank, drop-last), so an
epoch's batches can be recomputed exactly on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler

DEFAULT_NUM_RESIDUE_TYPES = 21  # 20 standard amino acids + unknown


def open_store(store):
    """A ``PointCloudStore`` from a path, or the store object given."""
    if store is None:
        raise ValueError("--store: a point-cloud store is needed (protein-care build-dataset makes one)")
    if isinstance(store, (str, Path)):
        from data_pipeline.store import PointCloudStore

        return PointCloudStore(store)
    return store


def split_indices(store, split: str | None) -> np.ndarray:
    """Indices of the clouds of ``split`` (``None`` or ``"all"``: every cloud)."""
    if split in (None, "all"):
        return np.arange(len(store), dtype=np.int64)
    try:
        indices = store.split(split)
    except (KeyError, ValueError) as error:
        raise ValueError(f"--split {split!r}: the store has no such split ({error})") from None
    return np.asarray(indices, dtype=np.int64)


def _packed_arrays(store):
    """The store's own packed arrays ``(coords, features, offsets)`` when it exposes
    them (``PointCloudStore``: memory-mapped ``coords``, ``_features``, ``offsets``)."""
    coords, offsets = getattr(store, "coords", None), getattr(store, "offsets", None)
    features = getattr(store, "features", None)
    if not isinstance(features, np.ndarray):
        features = getattr(store, "_features", None)
    if all(isinstance(a, np.ndarray) for a in (coords, features, offsets)):
        return coords, features, offsets
    return None


def store_num_residue_types(store) -> int:
    """Size of the store's residue vocabulary (``meta["feature_vocab"]``), else 21."""
    meta = dict(getattr(store, "meta", {}) or {})
    if "num_residue_types" in meta:
        return int(meta["num_residue_types"])
    if "feature_vocab" in meta:
        return len(meta["feature_vocab"])
    return DEFAULT_NUM_RESIDUE_TYPES


def store_config_hash(store) -> str | None:
    """The hash of the configuration that built the store, if its meta records one."""
    meta = dict(getattr(store, "meta", {}) or {})
    for key in ("config_hash", "config_sha256", "config_digest"):
        if meta.get(key):
            return str(meta[key])
    config = meta.get("config")
    if isinstance(config, dict):
        for key in ("hash", "sha256"):
            if config.get(key):
                return str(config[key])
    return None


@dataclass
class PackedClouds:
    """Clouds as flat tensors: ``coords`` (N, 3) float32 (Å), ``features`` (N,) long,
    ``offsets`` (n + 1,) long, ``ids`` one string per cloud."""

    coords: Tensor
    features: Tensor
    offsets: Tensor
    ids: list[str]

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def sizes(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @classmethod
    def from_arrays(cls, coords: list, features: list | None = None, ids: list[str] | None = None) -> PackedClouds:
        """Pack a list of (n_i, 3) arrays (and per-point codes) into flat tensors."""
        sizes = np.array([len(c) for c in coords], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        flat = np.concatenate([np.asarray(c, np.float32).reshape(-1, 3) for c in coords]) if coords else np.zeros((0, 3), np.float32)
        if features is None:
            feats = np.zeros(len(flat), np.int64)
        else:
            feats = np.concatenate([np.asarray(f, np.int64).reshape(-1) for f in features]) if features else np.zeros(0, np.int64)
        ids = list(ids) if ids is not None else [str(i) for i in range(len(coords))]
        return cls(torch.from_numpy(flat), torch.from_numpy(feats), torch.from_numpy(offsets), ids)

    @classmethod
    def from_store(cls, store, indices: np.ndarray | None = None) -> PackedClouds:
        """The clouds ``indices`` of a store (all when None), copied into memory. Uses the
        store's packed arrays with one numpy gather when it exposes them, else reads
        ``store[i]`` / ``store.features(i)`` cloud by cloud."""
        indices = np.arange(len(store), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        all_ids = list(store.ids)
        ids = [str(all_ids[i]) for i in indices]
        arrays = _packed_arrays(store)
        if arrays is not None:
            coords, features, offsets = (np.asarray(a) for a in arrays)
            starts, stops = offsets[indices], offsets[indices + 1]
            sizes = (stops - starts).astype(np.int64)
            gather = _ragged_arange(starts.astype(np.int64), sizes)
            new_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            return cls(
                torch.from_numpy(np.ascontiguousarray(coords[gather], dtype=np.float32)),
                torch.from_numpy(np.asarray(features[gather], dtype=np.int64)),
                torch.from_numpy(new_offsets),
                ids,
            )
        return cls.from_arrays([store[int(i)] for i in indices], [store.features(int(i)) for i in indices], ids)

    def to(self, device) -> PackedClouds:
        return PackedClouds(self.coords.to(device), self.features.to(device), self.offsets.to(device), self.ids)

    def gather(self, indices: Tensor, features: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(pos (M, 3), x (M,), batch (M,))`` for the clouds ``indices`` (B,), in that
        order, on the packed tensors' device (``x`` None when ``features`` is False: one
        gather fewer). The sizes are read from a host copy of the offsets, so on a GPU the
        gather needs no device-to-host synchronisation."""
        host = self._offsets_host()
        idx = indices.cpu().numpy()
        starts = host[idx]
        sizes = host[idx + 1] - starts
        total = int(sizes.sum())
        # one host-to-device copy: each cloud's size and the shift from its rank in the
        # batch to its row in ``coords`` (start − first position in the batch)
        shift = starts - (np.cumsum(sizes) - sizes)
        device = self.offsets.device
        sizes_shift = torch.from_numpy(np.stack([sizes, shift])).to(device, non_blocking=True)
        batch = torch.repeat_interleave(torch.arange(len(idx), device=device), sizes_shift[0], output_size=total)  # (M,)
        point = sizes_shift[1][batch].add_(torch.arange(total, device=device))  # (M,) rows of coords
        return self.coords[point], (self.features[point] if features else None), batch

    def _offsets_host(self) -> np.ndarray:
        if getattr(self, "_host", None) is None:
            self._host = self.offsets.cpu().numpy()
        return self._host

    def mean_radius_of_gyration(self) -> float:
        """Mean over clouds of sqrt(mean_i ‖p_i − c‖²), in Å: the default global length scale."""
        sizes = self.sizes.double()
        batch = torch.repeat_interleave(torch.arange(len(self)), self.sizes.cpu())
        coords = self.coords.cpu().double()
        centroid = torch.zeros(len(self), 3, dtype=torch.float64).index_add_(0, batch, coords) / sizes.clamp_min(1)[:, None].cpu()
        sq = (coords - centroid[batch]).pow(2).sum(1)
        rg = (torch.zeros(len(self), dtype=torch.float64).index_add_(0, batch, sq) / sizes.clamp_min(1).cpu()).sqrt()
        rg = rg[self.sizes.cpu() > 0]
        return float(rg.mean()) if rg.numel() else 1.0


def _ragged_arange(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, start + size)`` for each pair, vectorised."""
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    first = np.cumsum(sizes) - sizes
    return np.repeat(starts - first, sizes) + np.arange(total, dtype=np.int64)


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """Full batches per rank and epoch (drop-last at both the shard and the batch)."""
    return (n // world_size) // batch_size


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> Tensor:
    """This rank's batches of an epoch, ``(steps, batch_size)`` indices into the packed
    clouds: the permutation of ``DistributedSampler(shuffle=True, seed, drop_last)``
    after ``set_epoch(epoch)``, which is a function of (seed, epoch) only; the last
    incomplete batch is dropped (every batch has exactly ``batch_size`` clouds, so
    equivariance chunks are always whole)."""
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(iter(sampler)), dtype=torch.long)
    steps = order.numel() // batch_size
    return order[: steps * batch_size].reshape(steps, batch_size)

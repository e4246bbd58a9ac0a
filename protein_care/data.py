"""torch_geometric view of a :class:`data_pipeline.store.PointCloudStore`.

Each item is a ``Data(pos=float32 [n, 3], x=long [n] residue codes, id=str)``; a
``torch_geometric.loader.DataLoader`` batches them raggedly by index (``batch.batch``),
with no padding. Only the requested cloud's rows are read from the memory map.

Example::

    ds = StoreDataset("stores/ca", split="train")
    loader = DataLoader(ds, batch_size=64, shuffle=True)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data, Dataset

from data_pipeline.store import PointCloudStore


class StoreDataset(Dataset):
    """The clouds of one split (or all clouds) of a store as PyG ``Data`` objects.

    Args:
        store: a :class:`PointCloudStore` or the path of one.
        split: ``"train"``, ``"val"``, ``"test"`` or None for every cloud.
        transform: optional callable applied to each ``Data`` on access.
    """

    def __init__(
        self,
        store: PointCloudStore | str | Path,
        split: str | None = None,
        transform: Callable[[Data], Data] | None = None,
    ) -> None:
        super().__init__(root=None, transform=transform)
        self.store = store if isinstance(store, PointCloudStore) else PointCloudStore(store)
        self.split = split
        self.indices_in_store = (
            np.arange(len(self.store)) if split is None else self.store.split(split)
        )

    def len(self) -> int:
        return int(len(self.indices_in_store))

    def get(self, idx: int) -> Data:
        i = int(self.indices_in_store[idx])
        pos = torch.from_numpy(np.array(self.store[i], dtype=np.float32))  # copy out of the map
        x = torch.from_numpy(self.store.features(i).astype(np.int64))
        return Data(pos=pos, x=x, id=self.store.ids[i])

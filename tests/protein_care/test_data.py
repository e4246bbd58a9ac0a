"""StoreDataset: a store split as torch_geometric Data, batched raggedly by DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from data_pipeline.store import PointCloudStore
from data_pipeline.store_writer import CloudRecord, write_store
from protein_care.data import StoreDataset


@pytest.fixture
def store(tmp_path) -> PointCloudStore:
    rng = np.random.default_rng(0)
    records = [
        CloudRecord(f"c{i}", rng.normal(size=(n, 3)), rng.integers(0, 21, n).astype(np.uint8), {"split": split})
        for i, (n, split) in enumerate([(5, "train"), (17, "train"), (1, "val"), (40, "train"), (9, "test")])
    ]
    write_store(records, tmp_path / "store")
    return PointCloudStore(tmp_path / "store")


def test_items_are_data_with_pos_x_id(store):
    ds = StoreDataset(store, split="train")
    assert len(ds) == 3
    item = ds[1]
    assert item.pos.dtype == torch.float32 and item.pos.shape == (17, 3)
    assert item.x.dtype == torch.long and item.x.shape == (17,)
    assert item.id == "c1"
    np.testing.assert_array_equal(item.pos.numpy(), store[1])
    np.testing.assert_array_equal(item.x.numpy(), store.features(1))
    assert len(StoreDataset(store.path)) == 5  # a path works too; no split = every cloud


def test_dataloader_batches_ragged_clouds_by_index(store):
    loader = DataLoader(StoreDataset(store, split="train"), batch_size=3, shuffle=False)
    batch = next(iter(loader))
    assert batch.pos.shape == (5 + 17 + 40, 3)
    assert batch.batch.tolist() == [0] * 5 + [1] * 17 + [2] * 40
    assert batch.ptr.tolist() == [0, 5, 22, 62]
    assert batch.id == ["c0", "c1", "c3"]
    batch.pos += 1  # tensors are copies: the read-only memory map is untouched
    np.testing.assert_array_equal(store[0], PointCloudStore(store.path)[0])

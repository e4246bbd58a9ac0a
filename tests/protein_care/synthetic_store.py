"""A small in-memory stand-in for ``PointCloudStore`` (same reading interface), and a
helper that builds a real store from a few structure files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def pdb_folder() -> Path:
    """The real structures: ``$PROTEIN_CARE_TEST_PDB`` or ``<repo>/../shared/pdb``."""
    return Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb"))


class SyntheticStore:
    """``n`` anisotropic Gaussian clouds of ``lo``..``hi`` points, randomly oriented and
    translated, with random residue codes; splits: every 5th cloud is ``val``."""

    def __init__(self, n: int = 40, seed: int = 0, lo: int = 12, hi: int = 40):
        rng = np.random.default_rng(seed)
        self.clouds, self.feats = [], []
        for _ in range(n):
            m = int(rng.integers(lo, hi))
            axes = rng.uniform(3.0, 15.0, size=3)
            q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            cloud = (rng.normal(size=(m, 3)) * axes) @ q.T + rng.normal(size=3) * 30.0
            self.clouds.append(cloud.astype(np.float32))
            self.feats.append(rng.integers(0, 21, size=m).astype(np.uint8))
        self.ids = [f"cloud{i}" for i in range(n)]
        self.meta = {"feature_vocab": [f"R{i}" for i in range(21)], "config_hash": "synthetic"}
        self._splits = np.array([1 if i % 5 == 4 else 0 for i in range(n)])

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.clouds[i]

    def features(self, i: int) -> np.ndarray:
        return self.feats[i]

    def split(self, name: str) -> np.ndarray:
        names = ["train", "val"]
        if name not in names:
            raise ValueError(f"split must be one of {names}, got {name!r}")
        return np.flatnonzero(self._splits == names.index(name))


def build_small_store(out: Path, n_files: int = 30) -> Path:
    """A real CA store from the first ``n_files`` BM5-clean structures (all in ``train``
    is not guaranteed: splits come from the store's hash rule)."""
    files = sorted((pdb_folder() / "BM5-clean").glob("*.pdb*"))[:n_files]
    if not files:
        raise FileNotFoundError(f"no structures in {pdb_folder() / 'BM5-clean'} (set PROTEIN_CARE_TEST_PDB)")
    try:
        from data_pipeline.build import build_store
    except ImportError:
        build_store = None
    if build_store is not None:
        build_store([str(f) for f in files], out, selection="ca")
        return out
    from data_pipeline.parse import try_read_structure
    from data_pipeline.store_writer import CloudRecord, write_store
    from data_pipeline.structure import ParseFailure

    def records():
        for f in files:
            cloud = try_read_structure(f, selection="ca")
            if not isinstance(cloud, ParseFailure):
                stem = f.name.split(".")[0]
                yield CloudRecord(stem, cloud.coords, cloud.residue_codes(), {"group": stem})

    write_store(records(), out, {"config_hash": "test"})
    return out

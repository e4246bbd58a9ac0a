"""A packed, memory-mapped store of ragged point clouds: its layout and its reader
(written by :mod:`data_pipeline.store_writer`).

Layout of a store directory (all arrays little-endian ``.npy``)::

    coords.npy      float32 [N, 3]   all points, cloud after cloud
    features.npy    uint8   [N]      residue-type codes (vocabulary in meta.json)
    offsets.npy     int64   [n + 1]  cloud i is rows offsets[i]:offsets[i+1]
    splits.npy      uint8   [n]      index into meta["split_names"]
    ids.json        [n] cloud IDs
    entries.jsonl   one JSON object per cloud (source, chain, method, resolution, ...)
    failures.tsv    file <TAB> reason, one line per file (or chain) left out
    meta.json       configuration, its sha256, versions, counts, and the size and sha256
                    of every other file ("files"); written last

:class:`~data_pipeline.store_writer.StoreWriter` streams clouds into a temporary directory next to the target, fsyncs
it and renames it into place at :meth:`StoreWriter.commit`; a killed or failed write
leaves no directory that :class:`PointCloudStore` would accept. Readers map the arrays
with ``np.load(mmap_mode="r")``: ``store[i]`` is a read-only view that touches only its
rows. Opening checks structure, file sizes and split codes without reading the point
arrays; ``verify=True`` also reads everything: feature codes, that every coordinate is
finite, and every file against its recorded sha256 (stores written before checksums were
recorded open without that check). :meth:`~data_pipeline.store_writer.StoreWriter.commit` runs the same value checks
on what it wrote, so a store it commits is known good.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.splits import SPLIT_NAMES
from data_pipeline.store_integrity import file_problems, value_problem

FORMAT_VERSION = 1
ARRAY_FILES = ("coords.npy", "features.npy", "offsets.npy", "splits.npy")
REQUIRED_FILES = (*ARRAY_FILES, "ids.json", "entries.jsonl", "meta.json")
# every name a store folder may hold; a folder with anything else is never replaced
STORE_FILE_NAMES = frozenset({*REQUIRED_FILES, "failures.tsv", "sources.tsv"})


class StoreError(Exception):
    """A store directory that is missing, incomplete or inconsistent."""


class PointCloudStore:
    """Read a store: ``len(store)``, ``store[i]`` (coords view), ``store.split("train")``.

    Arrays are memory-mapped read-only; nothing is copied until a caller copies it.
    Opening validates the directory without reading the point arrays (see the module
    docstring) and raises :class:`StoreError` naming the store, the file and the problem.
    ``verify=True`` also checks every point's values (one vectorised pass) and every file
    against the sha256 recorded when it was written (:meth:`verify_checksums`; ``progress``
    shows a bar of the bytes read).
    ``random_access=True`` advises the kernel against readahead (``MADV_RANDOM``), so
    that shuffled reads from a cold cache fetch only the pages of the clouds asked for.
    """

    def __init__(
        self, path: str | Path, *, random_access: bool = False, verify: bool = False, progress: bool = False
    ) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no store here (not a directory)")
        missing = [f for f in REQUIRED_FILES if not (self.path / f).is_file()]
        if missing:
            raise StoreError(f"{self.path}: incomplete store, missing {', '.join(missing)}")
        try:
            self.meta: dict[str, Any] = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.path}: unreadable store file meta.json ({exc})") from None
        if not isinstance(self.meta, dict):
            raise StoreError(f"{self.path}: meta.json must hold a JSON object, found {type(self.meta).__name__}")
        if "files" in self.meta:  # sizes: cheap, and clearer than a failing np.load
            problems = file_problems(self.path, self.meta["files"], checksums=False)
            if problems:
                raise StoreError(f"{self.path}: damaged store: {'; '.join(problems)}")
        self.coords = self._load("coords.npy", mmap_mode="r")
        self._features = self._load("features.npy", mmap_mode="r")
        self.offsets = self._load("offsets.npy")
        self._splits = self._load("splits.npy")
        self.ids: list[str] = self._load("ids.json")
        self._entries: list[dict[str, Any]] | None = None
        self._validate()
        self._scan(every_point=verify)  # a plain open reads no point data: the arrays stay lazy
        if verify:
            self.verify_checksums(progress=progress)
        if random_access:  # shuffled training: no readahead, a read costs only its pages
            for array in (self.coords, self._features):
                mm = getattr(array, "_mmap", None)
                if mm is not None and hasattr(mmap, "MADV_RANDOM"):
                    mm.madvise(mmap.MADV_RANDOM)

    def _load(self, name: str, mmap_mode: str | None = None) -> Any:
        try:
            if name.endswith(".json"):
                return json.loads((self.path / name).read_text(encoding="utf-8"))
            return np.load(self.path / name, mmap_mode=mmap_mode)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.path}: unreadable store file {name} ({exc})") from None

    def _validate(self) -> None:
        def fail(msg: str) -> StoreError:
            return StoreError(f"{self.path}: {msg}")

        if self.meta.get("format_version") != FORMAT_VERSION:
            raise fail(f"format_version {self.meta.get('format_version')!r}, expected {FORMAT_VERSION}")
        c, o = self.coords, self.offsets
        if c.ndim != 2 or c.shape[1] != 3 or c.dtype != np.float32:
            raise fail(f"coords must be float32 [N, 3], found {c.dtype} {c.shape}")
        if o.ndim != 1 or len(o) < 1 or o.dtype.kind not in "iu":
            raise fail(f"offsets must be an int array [n + 1], found {o.dtype} {o.shape}")
        if o[0] != 0 or np.any(np.diff(o) < 0):
            raise fail("offsets must start at 0 and never decrease")
        if o[-1] != len(c):
            raise fail(f"last offset {int(o[-1])} != number of points {len(c)}")
        n = len(o) - 1
        if self._features.shape != (len(c),):
            raise fail(f"features has shape {self._features.shape}, expected ({len(c)},)")
        if not isinstance(self.ids, list) or not all(isinstance(i, str) for i in self.ids):
            raise fail("ids.json must be a list of strings")
        if len(self.ids) != n or self._splits.shape != (n,):
            raise fail(f"{n} clouds in offsets but {len(self.ids)} ids and split codes of shape {self._splits.shape}")
        for key in ("split_names", "feature_vocab"):
            value = self.meta.get(key, [])
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise fail(f"meta.json {key!r} must be a list of strings, found {value!r}")
        if self._features.dtype.kind not in "iu" or self._splits.dtype.kind not in "iu":
            raise fail(f"features/splits must be integer codes, found {self._features.dtype}/{self._splits.dtype}")

    def _scan(self, every_point: bool) -> None:
        names = self.meta.get("split_names", list(SPLIT_NAMES))
        problem = value_problem(self.coords, self._features, self.offsets, self._splits, self.ids,
                                len(names), len(self.meta.get("feature_vocab") or []),
                                every_point=every_point)  # fmt: skip
        if problem:
            raise StoreError(f"{self.path}: {problem}")

    def verify_checksums(self, progress: bool = False) -> bool:
        """Read every file and compare it with the sha256 recorded at commit (``progress``:
        a bar of the bytes read, on stderr).

        Returns ``False`` (nothing to compare) for a store written before checksums were
        recorded, ``True`` when every file matches; raises :class:`StoreError` otherwise.
        """
        if "files" not in self.meta:
            return False
        problems = file_problems(self.path, self.meta["files"], checksums=True, progress=progress)
        if problems:
            raise StoreError(f"{self.path}: damaged store: {'; '.join(problems)}")
        return True

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"cloud index {i} out of range for a store of {n}")
        return int(i) % n

    def __getitem__(self, i: int) -> np.ndarray:
        """Coordinates of cloud ``i``: a read-only float32 [n_i, 3] view."""
        i = self._index(i)
        return self.coords[self.offsets[i] : self.offsets[i + 1]]

    def features(self, i: int) -> np.ndarray:
        """Residue codes of cloud ``i``: a read-only uint8 [n_i] view."""
        i = self._index(i)
        return self._features[self.offsets[i] : self.offsets[i + 1]]

    def n_points(self, i: int) -> int:
        i = self._index(i)
        return int(self.offsets[i + 1] - self.offsets[i])

    def split(self, name: str) -> np.ndarray:
        """Indices (int64) of the clouds in split ``name``."""
        names = self.meta.get("split_names", list(SPLIT_NAMES))
        if name not in names:
            raise ValueError(f"split must be one of {names}, got {name!r}")
        return np.flatnonzero(self._splits == names.index(name))

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Per-cloud metadata (loaded on first use)."""
        if self._entries is None:
            entries = []
            with open(self.path / "entries.jsonl", encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    try:
                        entries.append(json.loads(line))
                    except ValueError as exc:
                        raise StoreError(f"{self.path}: entries.jsonl line {lineno}: not JSON ({exc})") from None
            if len(entries) != len(self):
                raise StoreError(f"{self.path}: entries.jsonl has {len(entries)} lines for {len(self)} clouds")
            self._entries = entries
        return self._entries

    def read_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copy clouds ``indices`` out: (coords [M, 3], features [M], ptr [k + 1]).

        Indices follow ``store[i]``: negative ones count from the end; one out of range
        raises IndexError naming it and the store size."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise IndexError(f"cloud index {int(bad[0])} out of range for a store of {n}")
        idx = np.where(idx < 0, idx + n, idx)  # negative indices count from the end, as store[i]
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        ptr = np.concatenate(([0], np.cumsum(ends - starts)))
        coords = np.empty((int(ptr[-1]), 3), dtype=np.float32)
        feats = np.empty(int(ptr[-1]), dtype=np.uint8)
        for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            coords[ptr[k] : ptr[k + 1]] = self.coords[s:e]
            feats[ptr[k] : ptr[k + 1]] = self._features[s:e]
        return coords, feats, ptr

    def __repr__(self) -> str:
        return f"PointCloudStore({str(self.path)!r}, clouds={len(self)}, points={len(self.coords)})"

"""A packed, memory-mapped store of ragged point clouds.

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

:class:`StoreWriter` streams clouds into a temporary directory next to the target, fsyncs
it and renames it into place at :meth:`StoreWriter.commit`; a killed or failed write
leaves no directory that :class:`PointCloudStore` would accept. Readers map the arrays
with ``np.load(mmap_mode="r")``: ``store[i]`` is a read-only view that touches only its
rows. Opening checks structure, file sizes and split codes without reading the point
arrays; ``verify=True`` also reads everything: feature codes, that every coordinate is
finite, and every file against its recorded sha256 (stores written before checksums were
recorded open without that check). :meth:`StoreWriter.commit` runs the same value checks
on what it wrote, so a store it commits is known good.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from data_pipeline.splits import SPLIT_NAMES, assign_split
from data_pipeline.atomic_files import fsync_dir
from data_pipeline.store_integrity import file_problems, seal_files, value_problem
from data_pipeline.structure import RESIDUE_VOCAB

FORMAT_VERSION = 1
ARRAY_FILES = ("coords.npy", "features.npy", "offsets.npy", "splits.npy")
REQUIRED_FILES = (*ARRAY_FILES, "ids.json", "entries.jsonl", "meta.json")


class StoreError(Exception):
    """A store directory that is missing, incomplete or inconsistent."""


@dataclass
class CloudRecord:
    """One cloud to write: ``coords`` float32 [n, 3], ``features`` uint8 [n], metadata."""

    id: str
    coords: np.ndarray
    features: np.ndarray
    entry: dict[str, Any] = field(default_factory=dict)


class _NpyAppender:
    """Write a ``.npy`` file whose first axis grows; the header is fixed up at close."""

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.row_shape, self.rows = path, np.dtype(dtype), row_shape, 0
        self.fh: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.header_len = self._write_header()

    def _write_header(self) -> int:
        self.fh.seek(0)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, *self.row_shape),
        }
        np.lib.format.write_array_header_1_0(self.fh, header)
        return self.fh.tell()

    def append(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if array.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {self.row_shape} expected, got {array.shape[1:]}")
        self.fh.write(array.data)
        self.rows += array.shape[0]

    def close(self) -> None:
        end = self.fh.seek(0, os.SEEK_END)
        # numpy pads the header so that the first axis can grow to 21 digits in place.
        if self._write_header() != self.header_len:
            raise RuntimeError(f"{self.path.name}: .npy header changed length")
        self.fh.seek(end)
        self.fh.close()


class StoreWriter:
    """Stream clouds into a new store at ``out``; atomic on :meth:`commit`.

    Use as a context manager: leaving the block without ``commit`` (an exception) removes
    the temporary directory. ``overwrite=False`` refuses an existing ``out``.
    """

    def __init__(self, out: str | Path, *, overwrite: bool = False) -> None:
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise FileExistsError(f"{self.out} exists (pass overwrite=True to replace it)")
        self.overwrite = overwrite
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-{os.getpid()}-", dir=self.out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a store is an ordinary folder
        self._coords = _NpyAppender(self.tmp / "coords.npy", np.float32, (3,))
        self._features = _NpyAppender(self.tmp / "features.npy", np.uint8, ())
        self._entries = open(self.tmp / "entries.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._failures = open(self.tmp / "failures.tsv", "w", encoding="utf-8")  # noqa: SIM115
        self._failures.write("file\treason\n")
        self.offsets: list[int] = [0]
        self.ids: list[str] = []
        self.splits: list[int] = []
        self.n_failures = 0
        self.split_fractions: Sequence[float] = (0.8, 0.1, 0.1)
        self._done = False

    def add(self, record: CloudRecord) -> None:
        """Append one cloud; ``entry["split"]`` defaults to the split of ``entry["group"]``."""
        coords = np.asarray(record.coords, dtype=np.float32).reshape(-1, 3)
        features = np.asarray(record.features).reshape(-1)
        if features.shape[0] != coords.shape[0]:
            raise ValueError(f"{record.id}: {coords.shape[0]} points but {features.shape[0]} features")
        split = record.entry.get("split") or assign_split(
            record.entry.get("group", record.id), self.split_fractions
        )
        self._coords.append(coords)
        self._features.append(features)
        self.offsets.append(self.offsets[-1] + coords.shape[0])
        self.ids.append(record.id)
        self.splits.append(SPLIT_NAMES.index(split))
        entry = {"id": record.id, **record.entry, "n_points": int(coords.shape[0]), "split": split}
        self._entries.write(json.dumps(entry, sort_keys=True) + "\n")

    def set_splits(self, splits: Sequence[str], extra: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Replace the split of every cloud added so far (and add the fields ``extra[i]``
        to entry ``i``): for splits that can only be decided once all clouds are known.
        Rewrites ``entries.jsonl`` in the temporary directory; call before :meth:`commit`."""
        if len(splits) != len(self.ids) or (extra is not None and len(extra) != len(self.ids)):
            raise ValueError(f"{len(self.ids)} clouds but {len(splits)} splits")
        codes = [SPLIT_NAMES.index(s) for s in splits]  # ValueError for an unknown name
        self._entries.close()
        path, new = self.tmp / "entries.jsonl", self.tmp / "entries.jsonl.new"
        with open(path, encoding="utf-8") as src, open(new, "w", encoding="utf-8") as dst:
            n = 0
            for n, line in enumerate(src, 1):
                entry = json.loads(line)
                entry.update(extra[n - 1] if extra is not None else {})
                entry["split"] = splits[n - 1]
                dst.write(json.dumps(entry, sort_keys=True) + "\n")
        if n != len(self.ids):
            raise RuntimeError(f"entries.jsonl has {n} lines for {len(self.ids)} clouds")
        os.replace(new, path)
        self._entries = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in commit()
        self.splits = codes

    def add_failure(self, file: str, reason: str) -> None:
        """One line of ``failures.tsv``."""
        clean = " ".join(str(reason).split())
        self._failures.write(f"{file}\t{clean}\n")
        self.n_failures += 1

    def write_text(self, name: str, text: str) -> None:
        """An extra file in the store (e.g. ``sources.tsv``)."""
        (self.tmp / name).write_text(text, encoding="utf-8")

    def commit(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Finish the arrays, write ``meta.json`` last (with every other file's size and
        sha256), fsync the files and the folder, and rename it into place."""
        self._coords.close()
        self._features.close()
        self._entries.close()
        self._failures.close()
        np.save(self.tmp / "offsets.npy", np.asarray(self.offsets, dtype=np.int64))
        np.save(self.tmp / "splits.npy", np.asarray(self.splits, dtype=np.uint8))
        (self.tmp / "ids.json").write_text(json.dumps(self.ids), encoding="utf-8")
        problem = value_problem(np.load(self.tmp / "coords.npy", mmap_mode="r"),
                                np.load(self.tmp / "features.npy", mmap_mode="r"), np.asarray(self.offsets),
                                np.asarray(self.splits), self.ids, len(SPLIT_NAMES), len(RESIDUE_VOCAB))
        if problem:  # a reader's plain open does not look at point values: refuse to commit them
            raise StoreError(f"{self.out}: not committed: {problem}")
        counts = np.bincount(np.asarray(self.splits, dtype=np.int64), minlength=len(SPLIT_NAMES))
        full = {
            "format_version": FORMAT_VERSION,
            "feature_vocab": list(RESIDUE_VOCAB),
            "split_names": list(SPLIT_NAMES),
            **meta,
            "counts": {
                "clouds": len(self.ids),
                "points": int(self.offsets[-1]),
                "failures": self.n_failures,
                "splits": {name: int(c) for name, c in zip(SPLIT_NAMES, counts)},
            },
            "files": seal_files(self.tmp, skip=("meta.json",)),  # fsyncs them too
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(self.tmp / "meta.json", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(full, indent=2, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(self.tmp)
        _replace_dir(self.tmp, self.out, self.overwrite)
        fsync_dir(self.out.parent)
        self._done = True
        return full

    def abort(self) -> None:
        """Drop the temporary directory (idempotent)."""
        for fh in (self._coords.fh, self._features.fh, self._entries, self._failures):
            fh.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()


def _replace_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} appeared during the build")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "store")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def write_store(
    clouds: Iterable[CloudRecord],
    out: str | Path,
    meta: Mapping[str, Any] | None = None,
    *,
    failures: Iterable[tuple[str, str]] = (),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``clouds`` (streamed, never all in memory) as a store; returns meta.json."""
    meta = dict(meta or {})
    with StoreWriter(out, overwrite=overwrite) as writer:
        writer.split_fractions = meta.get("split_fractions", writer.split_fractions)
        for record in clouds:
            writer.add(record)
        for file, reason in failures:
            writer.add_failure(file, reason)
        return writer.commit(meta)


def remove_stale_temporaries(out: str | Path) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>-*`` directories of builds whose process is gone."""
    out = Path(out)
    removed = []
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(tmp.name[len(f".{out.name}.tmp-") :].split("-")[0])
            os.kill(pid, 0)
            continue  # still running
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


class PointCloudStore:
    """Read a store: ``len(store)``, ``store[i]`` (coords view), ``store.split("train")``.

    Arrays are memory-mapped read-only; nothing is copied until a caller copies it.
    Opening validates the directory without reading the point arrays (see the module
    docstring) and raises :class:`StoreError` naming the store, the file and the problem.
    ``verify=True`` also checks every point's values (one vectorised pass) and every file
    against the sha256 recorded when it was written (:meth:`verify_checksums`).
    ``random_access=True`` advises the kernel against readahead (``MADV_RANDOM``), so
    that shuffled reads from a cold cache fetch only the pages of the clouds asked for.
    """

    def __init__(self, path: str | Path, *, random_access: bool = False, verify: bool = False) -> None:
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
            self.verify_checksums()
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

    def verify_checksums(self) -> bool:
        """Read every file and compare it with the sha256 recorded at commit.

        Returns ``False`` (nothing to compare) for a store written before checksums were
        recorded, ``True`` when every file matches; raises :class:`StoreError` otherwise.
        """
        if "files" not in self.meta:
            return False
        problems = file_problems(self.path, self.meta["files"], checksums=True)
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
        """Copy clouds ``indices`` out: (coords [M, 3], features [M], ptr [k + 1])."""
        idx = np.asarray(indices, dtype=np.int64)
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

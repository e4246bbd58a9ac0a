"""Write a :mod:`data_pipeline.store` atomically: clouds stream into a temporary folder
next to the target, which is fsynced and renamed into place at :meth:`StoreWriter.commit`.

A killed or failed write leaves no folder that
:class:`~data_pipeline.store.PointCloudStore` would accept; a build that died leaves a
``.<name>.tmp-<pid>-*`` folder that :func:`remove_stale_temporaries` deletes. Replacing a
store takes two renames (the old store aside into ``.<name>.old-<pid>-*``, the new one in
its place): a failed second rename puts the old store back, and a process killed between
the two leaves the old store aside, where :func:`remove_stale_temporaries` finds it and
puts it back. Only a folder of store files is ever replaced (:func:`replace_problem`).
``entries.jsonl`` is streamed as clouds arrive; splits decided only once all clouds are
known (:meth:`StoreWriter.set_splits`) rewrite it once, a sequential pass over a small
file, rather than holding every entry in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from data_pipeline.atomic_files import fsync_dir, process_alive
from data_pipeline.splits import SPLIT_NAMES, assign_split
from data_pipeline.store import FORMAT_VERSION, STORE_FILE_NAMES, StoreError
from data_pipeline.store_integrity import seal_files, value_problem
from data_pipeline.structure import RESIDUE_VOCAB


#: Fewest points of a cloud the writer accepts (stores written before 2026-11-26 may hold
#: empty clouds: readers must cope with them).
MIN_POINTS = 1


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
        # a file name that is not UTF-8 (surrogate escapes from the OS) is written as \udcXX
        self._failures = open(  # noqa: SIM115 - closed in commit()
            self.tmp / "failures.tsv", "w", encoding="utf-8", errors="backslashreplace")
        self._failures.write("file\treason\n")
        self.offsets: list[int] = [0]
        self.ids: list[str] = []
        self._id_set: set[str] = set()
        self.splits: list[int] = []
        self.n_failures = 0
        self.split_fractions: Sequence[float] = (0.8, 0.1, 0.1)
        self._done = False

    def add(self, record: CloudRecord) -> None:
        """Append one cloud; ``entry["split"]`` defaults to the split of ``entry["group"]``.
        A record that no store may hold (an empty, repeated or non-str ID, no points, a
        non-finite coordinate, a feature count unlike the point count, a feature code outside
        the residue vocabulary, an unknown split, an entry that is not strict JSON) raises
        ValueError naming it, and nothing of it is written."""
        if not isinstance(record.id, str) or not record.id:
            raise ValueError(f"cloud ID must be a non-empty str, got {record.id!r}")
        if record.id in self._id_set:
            raise ValueError(f"{record.id}: this cloud ID is already in the store (IDs must be unique)")
        coords, features = _checked_arrays(record)
        split = record.entry.get("split") or assign_split(
            record.entry.get("group", record.id), self.split_fractions
        )
        if split not in SPLIT_NAMES:
            raise ValueError(f"{record.id}: split must be one of {list(SPLIT_NAMES)}, got {split!r}")
        entry = {"id": record.id, **record.entry, "n_points": int(coords.shape[0]), "split": split}
        try:  # strict JSON (no NaN), before anything is written
            line = json.dumps(entry, sort_keys=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{record.id}: the entry is not JSON: {exc}") from None
        self._coords.append(coords)
        self._features.append(features)
        self.offsets.append(self.offsets[-1] + coords.shape[0])
        self.ids.append(record.id)
        self._id_set.add(record.id)
        self.splits.append(SPLIT_NAMES.index(split))
        self._entries.write(line)

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
        """An extra file in the store (e.g. ``sources.tsv``; non-UTF-8 file names as ``\\udcXX``)."""
        (self.tmp / name).write_text(text, encoding="utf-8", errors="backslashreplace")

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


def is_store_meta(meta: Any) -> bool:
    """Whether a parsed meta.json is a store's (:meth:`StoreWriter.commit` always writes
    ``format_version``), not some other program's."""
    return isinstance(meta, dict) and "format_version" in meta


def replace_problem(out: Path) -> str | None:
    """Why the existing ``out`` must not be replaced (deleted) by a new store, or None when
    it holds store files only (:data:`~data_pipeline.store.STORE_FILE_NAMES`) and either a
    store's meta.json or, damaged, no readable one but its arrays. An empty folder is fine."""
    if not out.is_dir():
        return "it is not a folder"
    try:
        entries = sorted(out.iterdir())
    except OSError as exc:
        return f"it cannot be listed: {exc.strerror or exc}"
    other = [p.name + ("/" if p.is_dir() else "") for p in entries
             if p.name not in STORE_FILE_NAMES or not p.is_file()]  # fmt: skip
    problems = []
    if other:
        more = f" and {len(other) - 5} more" if len(other) > 5 else ""
        problems.append(f"it also holds {', '.join(other[:5])}{more}, which are not store files")
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None  # missing or unreadable: a damaged store, if its arrays are there
    names = {p.name for p in entries}
    if isinstance(meta, dict) and not is_store_meta(meta):
        problems.append("its meta.json is not a store's (no format_version)")
    elif names and not is_store_meta(meta) and not {"coords.npy", "offsets.npy"} <= names:
        problems.append("it has neither a store's meta.json nor store arrays")
    return "; ".join(problems) or None


def _replace_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    if not overwrite:
        raise FileExistsError(f"{out} appeared during the build")
    problem = replace_problem(out)  # checked again here: the old folder is deleted below
    if problem:
        raise StoreError(f"{out} exists and is not a store ({problem}); refusing to replace it")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
    aside = old / "store"
    try:
        os.replace(out, aside)
        os.replace(tmp, out)
    except BaseException:
        if aside.exists() and not out.exists():
            os.replace(aside, out)  # the old store back: a failed write leaves it as it was
        if not aside.exists():
            shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _checked_arrays(record: CloudRecord) -> tuple[np.ndarray, np.ndarray]:
    """``record``'s coordinates (float32 [n, 3]) and feature codes ([n]), or a ValueError
    naming the record and what is wrong with them."""
    coords, features = np.asarray(record.coords), np.asarray(record.features)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"{record.id}: coordinates must have shape [n, 3], got {list(coords.shape)}")
    if features.shape != coords.shape[:1]:
        raise ValueError(f"{record.id}: {coords.shape[0]} points but features of shape {list(features.shape)}")
    if coords.shape[0] < MIN_POINTS:
        raise ValueError(f"{record.id}: {coords.shape[0]} points, fewer than the {MIN_POINTS} a cloud needs")
    coords = coords.astype(np.float32)
    if not np.isfinite(coords).all():
        raise ValueError(f"{record.id}: coordinates must be finite, got NaN or inf")
    top = len(RESIDUE_VOCAB) - 1  # the vocabulary the store records
    if features.dtype.kind not in "iub":
        raise ValueError(f"{record.id}: features must be integer codes in [0, {top}], got dtype {features.dtype}")
    if features.size and (features.min() < 0 or features.max() > top):
        raise ValueError(f"{record.id}: features must be integer codes in [0, {top}] (the residue vocabulary), "
                         f"got values in [{features.min()}, {features.max()}]")
    return coords, features


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
    """Delete the ``.<name>.tmp-<pid>-*`` and ``.<name>.old-<pid>-*`` folders of writers
    whose process is gone; an old store set aside by a writer killed before it renamed
    the new one into place is first put back at ``out`` (when nothing is there)."""
    out = Path(out)
    removed = []
    for kind in ("tmp", "old"):
        prefix = f".{out.name}.{kind}-"
        for folder in out.parent.glob(f"{prefix}*"):
            if process_alive(folder.name[len(prefix) :].split("-")[0]):
                continue
            if kind == "old" and (folder / "store").is_dir() and not out.exists():
                os.replace(folder / "store", out)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


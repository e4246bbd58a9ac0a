"""Integrity of a store: per-file checksums and value checks (durable writes:
:mod:`data_pipeline.atomic_files`).

:func:`seal_files` fsyncs every file of a finished store folder and returns its size and
sha256, which :class:`data_pipeline.store_writer.StoreWriter` records in ``meta.json`` as
``files``; :func:`file_problems` compares a folder with that record: sizes (cheap, on
every open) and, asked to, checksums (reads everything: ``verify=True``).
:func:`value_problem` checks the arrays' values in one vectorised pass on every open.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm


DIGEST = "sha256"
_CHUNK = 1 << 20


def _digest(path: Path, sync: bool = False, bar: tqdm | None = None) -> str:
    h = hashlib.new(DIGEST)
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
            if bar is not None:
                bar.update(len(block))
        if sync:
            os.fsync(fh.fileno())
    return h.hexdigest()


def seal_files(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """fsync every regular file of ``folder`` (but ``skip``) and return
    ``{name: {"bytes": size, "sha256": hex}}``, sorted by name."""
    record = {}
    for path in sorted(folder.iterdir()):
        if path.name in skip or not path.is_file():
            continue
        record[path.name] = {"bytes": path.stat().st_size, DIGEST: _digest(path, sync=True)}
    return record


def file_problems(folder: Path, files: Any, *, checksums: bool, progress: bool = False) -> list[str]:
    """How ``folder`` differs from the ``files`` record of :func:`seal_files`: missing
    files, changed sizes and, with ``checksums=True`` (reads every file), changed content;
    ``progress`` shows a bar of the bytes read on stderr."""
    if not isinstance(files, Mapping):
        return [f"meta.json 'files' must be an object, got {type(files).__name__}"]
    total = sum(w.get("bytes", 0) for w in files.values() if isinstance(w, Mapping) and isinstance(w.get("bytes"), int))
    with tqdm(total=total, desc="verify", unit="B", unit_scale=True, disable=not (checksums and progress),
              file=sys.stderr, leave=False) as bar:  # fmt: skip
        return _file_problems(folder, files, checksums, bar)


def _file_problems(folder: Path, files: Mapping[str, Any], checksums: bool, bar: tqdm) -> list[str]:
    problems = []
    for name, want in files.items():
        if not isinstance(want, Mapping):
            problems.append(f"meta.json 'files' entry of {name} is not an object")
            continue
        try:
            size = (folder / name).stat().st_size
        except OSError:
            problems.append(f"{name} is missing")
            continue
        if size != want.get("bytes"):
            problems.append(f"{name} has {size} bytes, {want.get('bytes')} were written")
        elif checksums and _digest(folder / name, bar=bar) != want.get(DIGEST):
            problems.append(f"{name} changed since it was written ({DIGEST} mismatch)")
    return problems


def value_problem(
    coords: np.ndarray, features: np.ndarray, offsets: np.ndarray, splits: np.ndarray,
    ids: list[str], n_splits: int, n_features: int, *, every_point: bool = True,
) -> str | None:
    """The first value that a store of validated shapes must not hold, described (None if
    all is well): a split code not below ``n_splits`` and, with ``every_point`` (which
    reads the point arrays whole), a feature code not below ``n_features`` (0: no
    vocabulary, not checked) or a non-finite coordinate."""

    def cloud_of(row: int) -> str:
        i = int(np.searchsorted(offsets, row, side="right")) - 1
        return f"cloud {i}, {ids[i]!r}"

    if len(splits) and (int(splits.min()) < 0 or int(splits.max()) >= n_splits):
        i = int(np.argmax((splits < 0) | (splits >= n_splits)))
        return f"splits.npy has code {int(splits[i])} for cloud {i} ({ids[i]!r}), but meta.json names {n_splits} splits"
    if not every_point:
        return None
    if n_features and len(features) and (int(features.min()) < 0 or int(features.max()) >= n_features):
        row = int(np.argmax((features < 0) | (features >= n_features)))
        return (f"features.npy has code {int(features[row])} at point {row} ({cloud_of(row)}), "
                f"but the vocabulary in meta.json has {n_features} entries")  # fmt: skip
    step = 1 << 20  # rows per block: bounded temporaries on large stores
    for start in range(0, len(coords), step):
        block = coords[start : start + step]
        if not np.isfinite(block).all():  # all(axis=1) only to locate: it is 20x slower
            row = start + int(np.argmin(np.isfinite(block).all(axis=1)))
            return f"coords.npy has a non-finite value (NaN or inf) at point {row} ({cloud_of(row)})"
    return None

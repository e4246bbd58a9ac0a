"""The sources of a build: structure files found in folders, or listed by a fetch
manifest, and the table (path, size, mtime) that identifies the set in a store's
configuration (:mod:`data_pipeline.build`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

STRUCTURE_SUFFIXES = (".cif", ".mmcif", ".pdb", ".ent")
MISSING = "missing: file not found"  # failures.tsv reason of a listed source that does not exist


def is_structure_file(path: Path) -> bool:
    """A name ending in .cif/.mmcif/.pdb/.ent, optionally .gz (directory discovery only)."""
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(STRUCTURE_SUFFIXES)


def find_structure_files(sources: Sequence[str | Path], missing: list[Path] | None = None) -> list[Path]:
    """Expand directories (recursively, following symlinked sub-folders, each folder
    once) and return sorted, de-duplicated absolute paths (symlinks resolved).

    A source that does not exist raises FileNotFoundError, or is appended (absolute,
    once) to ``missing`` when a list is given.
    """
    found: set[Path] = set()
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found.update(q.resolve() for q in _walk_files(p) if is_structure_file(q))
        elif p.exists():
            found.add(p.resolve())
        elif missing is None:
            raise FileNotFoundError(f"source not found: {p}")
        elif p.absolute() not in missing:
            missing.append(p.absolute())
    return sorted(found)


def _walk_files(root: Path) -> Iterator[Path]:
    """Regular files under ``root``; symlinked folders are followed, and a folder reached
    twice (a link loop, or two links to one folder) is walked once, by (st_dev, st_ino)."""
    seen: set[tuple[int, int]] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            subfolders[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            subfolders[:] = []  # walked already: skip it and everything below it
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders.sort()
        for name in files:
            q = Path(folder, name)
            if q.is_file():
                yield q


def manifest_files(manifest: str | Path) -> list[Path]:
    """Verified files of a fetch-pdb ``manifest.jsonl``, one per ID
    (:func:`data_pipeline.fetch_manifest.usable_files`)."""
    from data_pipeline.fetch_manifest import usable_files

    return usable_files(manifest)


def sources_table(paths: Sequence[Path], missing: Sequence[Path] = ()) -> str:
    """``path<TAB>size<TAB>mtime_ns`` lines (``path<TAB>missing`` for ``missing``), the
    identity of the source set."""
    lines = []
    for p in paths:
        st = p.stat()
        lines.append(f"{p}\t{st.st_size}\t{st.st_mtime_ns}")
    lines += [f"{p}\tmissing" for p in sorted(missing)]
    return "\n".join(lines) + ("\n" if lines else "")

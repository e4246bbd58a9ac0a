"""The sources of a build: structure files found in folders, or listed by a fetch
manifest, and the table (path, size, mtime) that identifies the set in a store's
configuration (:mod:`data_pipeline.build`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

STRUCTURE_SUFFIXES = (".cif", ".mmcif", ".pdb", ".ent")
MISSING = "missing: file not found"  # failures.tsv reason of a listed source that does not exist


def is_structure_file(path: Path) -> bool:
    """A name ending in .cif/.mmcif/.pdb/.ent, optionally .gz (directory discovery only)."""
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(STRUCTURE_SUFFIXES)


def find_structure_files(sources: Sequence[str | Path], missing: list[Path] | None = None) -> list[Path]:
    """Expand directories (recursively) and return sorted, de-duplicated absolute paths.

    A source that does not exist raises FileNotFoundError, or is appended (absolute,
    once) to ``missing`` when a list is given.
    """
    found: set[Path] = set()
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found.update(q.resolve() for q in p.rglob("*") if q.is_file() and is_structure_file(q))
        elif p.exists():
            found.add(p.resolve())
        elif missing is None:
            raise FileNotFoundError(f"source not found: {p}")
        elif p.absolute() not in missing:
            missing.append(p.absolute())
    return sorted(found)


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

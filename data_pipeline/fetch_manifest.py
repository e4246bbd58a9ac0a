"""The fetch manifest: ``manifest.jsonl`` in the cache folder, one JSON line per entry
and run, appended (never rewritten), so the history of every run is kept.

Each line holds ``id``, ``status`` (``ok``, ``cached``, ``missing``, ``obsolete``,
``invalid``, ``failed``), ``reason``, ``path`` (relative to the manifest's folder, or
null), ``bytes``, ``sha256``, ``source``, ``elapsed_s``, ``format`` and ``time`` (UTC,
ISO 8601). Readers want the *last* line of each ID: :func:`latest_status`; a build wants the
verified file of each ID, whichever format: :func:`usable_files`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_NAME", "USABLE_STATUSES", "ManifestWriter", "latest_status", "usable_files"]

MANIFEST_NAME = "manifest.jsonl"
# Statuses whose ``path`` names a verified file.
USABLE_STATUSES: frozenset[str] = frozenset({"ok", "cached"})


class ManifestWriter:
    """Append-only JSONL writer that is safe across threads and survives kills.

    Every record becomes one ``os.write`` of a whole line on a descriptor opened with
    ``O_APPEND``, under a lock, followed by ``fsync``: lines never interleave, and a
    killed process loses at most the line it was writing. A torn last line left by such
    a kill is closed with a newline before the first new line is written (readers skip
    it as unparseable).

    Args:
        path: the manifest file; created (with its folder) if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one JSON line, then flush it to disk.

        Args:
            record: a JSON-serialisable mapping.
        """
        line = (json.dumps(record, sort_keys=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            written = os.write(self._fd, line)
            while written < len(line):  # a short write on a regular file is rare
                written += os.write(self._fd, line[written:])
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; further appends raise ``OSError``."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def latest_status(manifest_path: str | Path, *, resolve_paths: bool = True) -> dict[str, dict]:
    """Read a manifest and return the last record of each ID.

    Args:
        manifest_path: the ``manifest.jsonl`` file.
        resolve_paths: when true (default), ``path`` is turned into an absolute path
            (the manifest stores it relative to its own folder).

    Returns:
        ``{id: record}`` in order of first appearance. Lines that are not complete JSON
        objects with an ``id`` (e.g. a line torn by a killed run) are skipped. A record
        is usable when ``record["status"] in USABLE_STATUSES``. Runs of the two formats
        share IDs: :func:`usable_files` is what a build should read.

    Example:
        >>> records = latest_status("cache/manifest.jsonl")  # doctest: +SKIP
        >>> paths = [r["path"] for r in records.values() if r["status"] in USABLE_STATUSES]
    """
    return {record["id"]: record for record in _records(Path(manifest_path), resolve_paths)}


def usable_files(manifest_path: str | Path) -> list[Path]:
    """The verified file of each ID in a manifest, for a build: of the last record of each
    format (``format``, else the path's suffix; mmCIF preferred when both are usable), the
    usable one. A later run of the other format that failed (large entries have no
    PDB-format file) never hides a verified file, and one entry never gives two files."""
    last: dict[tuple[str, str], dict] = {}
    for record in _records(Path(manifest_path), resolve_paths=True):
        last[record["id"], _format(record)] = record
    chosen: dict[str, Path] = {}
    for fmt in ("cif", "pdb"):
        for (pdb_id, record_format), record in last.items():
            if record_format == fmt and pdb_id not in chosen and record.get("status") in USABLE_STATUSES:
                if record.get("path"):
                    chosen[pdb_id] = Path(record["path"])
    return list(chosen.values())


def _format(record: dict) -> str:
    fmt = record.get("format")
    if fmt in ("cif", "pdb"):
        return fmt
    return "pdb" if str(record.get("path") or "").endswith((".pdb", ".pdb.gz", ".ent", ".ent.gz")) else "cif"


def _records(manifest_path: Path, resolve_paths: bool):
    """The manifest's whole records, in file order (torn or foreign lines skipped)."""
    with open(manifest_path, "rb") as fh:
        for raw in fh:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                continue
            if resolve_paths and record.get("path"):
                record["path"] = str((manifest_path.parent / record["path"]).resolve())
            yield record

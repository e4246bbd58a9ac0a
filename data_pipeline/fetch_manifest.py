"""The fetch manifest: ``manifest.jsonl`` in the cache folder, one JSON line per entry
and run, appended (never rewritten), so the history of every run is kept.

Each line holds ``id``, ``status`` (``ok``, ``cached``, ``missing``, ``obsolete``,
``invalid``, ``failed``), ``reason``, ``path`` (relative to the manifest's folder, or
null), ``bytes``, ``sha256``, ``source``, ``elapsed_s``, ``format`` and ``time`` (UTC,
ISO 8601). Readers want the *last* line of each ID: :func:`latest_status`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_NAME", "USABLE_STATUSES", "ManifestWriter", "latest_status"]

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
        is usable when ``record["status"] in USABLE_STATUSES``.

    Example:
        >>> records = latest_status("cache/manifest.jsonl")  # doctest: +SKIP
        >>> paths = [r["path"] for r in records.values() if r["status"] in USABLE_STATUSES]
    """
    manifest_path = Path(manifest_path)
    out: dict[str, dict] = {}
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
            out[record["id"]] = record
    return out

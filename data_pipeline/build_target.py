"""What a build may do with what is already at its output path.

:func:`check_target` decides, before any parsing, between "up to date" (the same
configuration, and the store is intact), "build" (nothing there, an empty folder, a
damaged store, or another configuration with ``overwrite``) and "refuse" (another
configuration without ``overwrite``, or a folder that is not a store). A folder is
replaced only when it holds store files and nothing else, with a store's meta.json
(or, damaged, none readable): anything else there is never deleted
(:func:`data_pipeline.store_writer.replace_problem`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from data_pipeline.store import STORE_FILE_NAMES as STORE_FILE_NAMES  # re-exported
from data_pipeline.store import PointCloudStore, StoreError
from data_pipeline.store_writer import is_store_meta, replace_problem


class StoreConfigMismatch(Exception):
    """An existing store was built with another configuration."""

    def __init__(self, path: Path, differing: dict[str, tuple[Any, Any]]) -> None:
        self.path, self.differing = path, differing
        parts = [f"{k} (store: {old!r}, requested: {new!r})" for k, (old, new) in differing.items()]
        super().__init__(
            f"{path} was built with a different configuration: {'; '.join(parts)}. "
            "Use overwrite=True (--overwrite) to rebuild it, or another output path."
        )


def existing_meta(out: Path) -> dict[str, Any] | None:
    """``out/meta.json`` as a dict, or None when it is missing, unreadable or not an object."""
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def say(message: str) -> None:
    """A note on stderr while building (the build goes on)."""
    print(f"build-dataset: {message}", file=sys.stderr, flush=True)


def check_target(
    out: Path, config: dict[str, Any], digest: str, table: str, overwrite: bool, progress: bool = False
) -> PointCloudStore | None:
    """The intact store at ``out`` if it was built with this configuration (``digest``),
    else None when a build may write ``out``.

    A store with this configuration that fails to open or to verify its checksums is
    rebuilt (saying so on stderr); so is, with ``overwrite``, a folder of store files
    whose meta.json is unreadable.

    Raises:
        StoreConfigMismatch: ``out`` holds another configuration and not ``overwrite``.
        StoreError: ``out`` is not a store (a meta.json that is not a store's, or other
            files beside the store's: never replaced, even with ``overwrite``), or is a
            store with an unreadable meta.json and not ``overwrite``.
    """
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    existing = existing_meta(out)
    problem = replace_problem(out)  # None: store files only, so a rebuild may replace them
    if existing is None or not is_store_meta(existing):
        if problem:
            raise StoreError(f"{out} exists and is not a store ({problem}); refusing to replace it")
        reason = "meta.json is missing, unreadable or not a JSON object"
        if not overwrite:
            raise StoreError(f"{out} is a damaged store ({reason}); use overwrite=True (--overwrite) to rebuild it")
        say(f"{out} is damaged ({reason}); rebuilding")
        return None
    if existing.get("config_hash") == digest:
        try:
            return PointCloudStore(out, verify=True, progress=progress)
        except StoreError as exc:
            reason = str(exc).removeprefix(f"{out}: ").removeprefix("damaged store: ")
            if problem:
                raise StoreError(f"{out} is a damaged store ({reason}) but {problem}; "
                                 "refusing to replace it") from None
            say(f"{out} is damaged ({reason}); rebuilding")
            return None
    if overwrite:
        if problem:
            raise StoreError(f"{out} holds a store but {problem}; refusing to replace it "
                             "(move them elsewhere, or use another output path)")
        return None
    old = existing.get("config") if isinstance(existing.get("config"), dict) else {}
    differing = {k: (old.get(k), config.get(k)) for k in sorted(config.keys() | old.keys())
                 if old.get(k) != config.get(k)}  # a key only one side has: None on the other
    if "sources_sha256" in differing:
        old_hash, new_hash = differing["sources_sha256"]
        differing["sources_sha256"] = (str(old_hash)[:12], f"{new_hash[:12]} ({_sources_diff(out, table)})")
    raise StoreConfigMismatch(out, differing or {"config_hash": (existing.get("config_hash"), digest)})


def _sources_diff(out: Path, table: str) -> str:
    try:
        old_lines = (out / "sources.tsv").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "different (old source list unavailable)"
    old = {ln.split("\t")[0]: ln for ln in old_lines if ln}
    table = table.encode("utf-8", "backslashreplace").decode("utf-8")  # as sources.tsv writes it
    new = {ln.split("\t")[0]: ln for ln in table.splitlines() if ln}
    added = len(new.keys() - old.keys())
    removed = len(old.keys() - new.keys())
    changed = sum(1 for k in new.keys() & old.keys() if new[k] != old[k])
    return f"{added} added, {removed} removed, {changed} changed files"


def failures_beside(out: Path) -> Path:
    """Where a build that wrote no store leaves its failure list: ``<out>.failures.tsv``."""
    return out.parent / f"{out.name}.failures.tsv"

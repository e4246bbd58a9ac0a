"""Which store each run was trained on, compared with the store the app shows.

A run records its training store (``store_path``) and that store's configuration hash
(``store_config_hash``) in ``config.json``. A run shown another store's proteins (above
all, another atom selection: a heavy-atom model fed CA clouds) draws trajectories that
may mean little, so the page marks it and the command warns.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SELECTIONS = ("ca", "backbone", "heavy", "all")


def store_selection(meta: dict) -> str:
    """The atom selection a store was built with (``"ca"`` when it does not say)."""
    config = meta.get("config")
    if isinstance(config, str):
        try:
            config = ast.literal_eval(config)
        except (ValueError, SyntaxError):
            config = None
    selection = config.get("selection") if isinstance(config, dict) else meta.get("selection")
    return selection if selection in SELECTIONS else "ca"


def atoms(selection: str) -> str:
    """``"CA atoms"``, ``"heavy atoms"``, … for messages."""
    return f"{selection.upper() if selection == 'ca' else selection} atoms"


@dataclass(frozen=True)
class StoreMismatch:
    """A run trained on another store than the one shown: ``note`` marks it in the
    page, ``warning`` says it on stderr."""

    run_dir: str
    run_store: str | None
    run_selection: str | None  # None: its store's meta.json cannot be read
    note: str
    warning: str


def compare(run, store, shown_selection: str) -> StoreMismatch | None:
    """A :class:`StoreMismatch` when ``run`` was trained on another store than
    ``store`` (by configuration hash, else by absolute path); None when it was or when
    neither is recorded."""
    from data_pipeline.build_target import existing_meta
    from protein_care.evaluation.evaluate import training_store_path
    from protein_care.training.data import store_config_hash

    config = run.config
    run_hash, run_path = config.get("store_config_hash"), training_store_path(config)
    shown_hash, shown_path = store_config_hash(store), getattr(store, "path", None)
    if run_hash and shown_hash:
        same = run_hash == shown_hash
    elif run_path and shown_path and Path(run_path).is_absolute():
        same = Path(run_path).resolve() == Path(shown_path).resolve()
    else:
        return None  # nothing recorded to compare
    if same:
        return None
    run_meta = existing_meta(Path(run_path)) if run_path else None
    run_selection = store_selection(run_meta) if run_meta is not None else None
    shown_name = Path(str(shown_path)).name if shown_path else "the store"
    if run_selection and run_selection != shown_selection:
        note = f"trained on another store ({atoms(run_selection)}); shown: {atoms(shown_selection).split()[0]}"
        why = f"its encoder saw {atoms(run_selection)}, the shown store has {atoms(shown_selection)}"
    else:
        note = f"trained on another store ({Path(str(run_path)).name if run_path else 'unrecorded'}); shown: {shown_name}"
        why = "its embeddings of these proteins are not those of its training data"
    warning = (f"{run.dir}: trained on the store {run_path or '(not recorded)'}, not on the shown store "
               f"{shown_path}: {why}; the page marks it")
    return StoreMismatch(str(run.dir), run_path, run_selection, note, warning)

"""Which store each run was trained on, compared with the store it is shown or evaluated on.

A run records its training store (``store_path``) and that store's configuration hash
(``store_config_hash``) in ``config.json``. A run shown another store's proteins (above
all, another atom selection: a heavy-atom model fed CA clouds) draws trajectories, and
gets numbers, that may mean little. ``protein-care plot``, ``compare`` and ``app`` use
the same check: without ``--store`` they refuse runs of different stores
(:func:`different_stores_message`); with ``--store`` they warn and mark those runs.
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
    page (or panel, or report), ``warning`` says it on stderr."""

    run_dir: str
    run_store: str | None
    run_selection: str | None  # None: its store's meta.json cannot be read
    note: str
    warning: str


def store_mismatch(run_dir, config: dict, store, shown_selection: str | None = None, *,
                   marked: str = "the page marks it") -> StoreMismatch | None:
    """A :class:`StoreMismatch` when the run in ``run_dir`` (its ``config.json`` as
    ``config``) was trained on another store than ``store`` (by configuration hash,
    else by absolute path); None when it was or when neither is recorded. ``marked``
    ends the warning (where the mismatch is shown)."""
    from data_pipeline.build_target import existing_meta
    from protein_care.evaluation.evaluate import training_store_path
    from protein_care.training.data import store_config_hash

    if shown_selection is None:
        shown_selection = store_selection(getattr(store, "meta", {}) or {})
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
    warning = (f"{run_dir}: trained on the store {run_path or '(not recorded)'}, not on the shown store "
               f"{shown_path}: {why}; {marked}")
    return StoreMismatch(str(run_dir), run_path, run_selection, note, warning)


def compare(run, store, shown_selection: str) -> StoreMismatch | None:
    """:func:`store_mismatch` of a loaded run (``run.dir``, ``run.config``), as the app marks it."""
    return store_mismatch(run.dir, run.config, store, shown_selection)


def different_stores_message(first_run, store_path, selection: str, mismatches: list[StoreMismatch],
                             what: str = "to choose the proteins shown") -> str:
    """Why runs trained on different stores are refused when no ``--store`` was given:
    the first run and its store, then every run trained on another one."""
    others = ", ".join(f"{m.run_dir} on {m.run_store or '(not recorded)'}"
                       + (f" ({atoms(m.run_selection)})" if m.run_selection else "") for m in mismatches)
    return (f"the runs were trained on different stores: {first_run} on {store_path} ({atoms(selection)}), "
            f"{others}. Pass --store STORE {what} (runs trained on another store are then marked)")


def run_store_mismatches(runs, store, store_path, *, store_given: bool, what: str,
                         marked: str) -> list[StoreMismatch | None]:
    """:func:`store_mismatch` of each ``(run_dir, config)`` in ``runs`` against ``store``
    (at ``store_path``). Raises ValueError (:func:`different_stores_message`) when some
    run was trained on another store and the user did not choose one (``store_given``):
    the check ``plot`` and ``compare`` share."""
    selection = store_selection(getattr(store, "meta", {}) or {})
    mismatches = [store_mismatch(run_dir, config, store, selection, marked=marked) for run_dir, config in runs]
    if not store_given and any(mismatches):
        raise ValueError(different_stores_message(runs[0][0], store_path, selection,
                                                  [m for m in mismatches if m], what))
    return mismatches

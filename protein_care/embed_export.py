"""The embeddings of a store's clouds by a trained encoder, as one ``.npz`` file.

``protein-care embed RUN --out emb.npz`` embeds every cloud of the run's training store
(or of ``--store``, e.g. one built from a user's own structure files with
``build-dataset``) with the frozen encoder, each cloud in its pose as stored, and writes:

* ``embeddings``: float32 ``(n, dim)``, the encoder's output rows (unit norm; for a
  ``split`` embedding the invariant block, then the equivariant block, weighted as in
  the encoder);
* ``ids``: the clouds' store IDs; ``splits``: their store splits; ``indices``: their
  positions in the store;
* ``meta``: a JSON string: run, checkpoint and step, store path and configuration hash,
  atom selection, encoder and embedding settings, ``length_scale``, date.

    >>> data = np.load("emb.npz")                                    # doctest: +SKIP
    >>> z, ids = data["embeddings"], data["ids"]

Clouds are batched by size (:func:`size_batches`, within
:func:`protein_care.embedding.clouds_per_batch`), so large all-atom clouds, and the
attention of a set transformer, do not exhaust memory; the file is written atomically.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data_pipeline.atomic_files import atomic_file, temporary_beside
from data_pipeline.splits import SPLIT_NAMES
from protein_care.embedding import clouds_per_batch, embed_clouds, largest_cloud
from protein_care.evaluation.evaluate import open_store, split_indices, training_store_path
from protein_care.models import model_config
from protein_care.provenance import atoms, store_mismatch, store_selection
from protein_care.runs import load_run

#: At most this many clouds per encoder call (fewer when their points exceed the budget).
MAX_BATCH = 1024


def size_batches(sizes: np.ndarray, fits: Callable[[int], int], max_batch: int = MAX_BATCH) -> list[np.ndarray]:
    """Batches of clouds of similar size, as positions into ``sizes``: the clouds sorted
    by size, smallest first, each batch holding at most ``fits(n)`` clouds (at least one,
    at most ``max_batch``), ``n`` being its largest cloud. Similar sizes keep the padding
    of an attention encoder (heads × B × n²) small."""
    out, current = [], []
    for position in np.argsort(sizes, kind="stable").tolist():
        if current and len(current) >= min(max_batch, max(1, fits(int(sizes[position])))):
            out.append(np.array(current, dtype=np.int64))
            current = []
        current.append(position)
    if current:
        out.append(np.array(current, dtype=np.int64))
    return out


def _open_embedded_store(run_dir, config: dict, store):
    """``store``, or the run's training store with a message that says so when it is gone."""
    from data_pipeline.store import StoreError

    if store is not None:
        return open_store(store)
    path = training_store_path(config)
    if not path:
        raise ValueError(f"{run_dir}: the run's config names no training store; pass --store STORE")
    try:
        return open_store(path)
    except (FileNotFoundError, StoreError) as error:
        raise ValueError(f"the training store of {run_dir}, {path} (its config.json), cannot be opened ({error}); "
                         "pass --store STORE") from None


def _selection_warning(run, store, selection: str) -> tuple[str | None, str | None]:
    """(the run's training selection if known, a warning when it differs from the store's
    or cannot be checked)."""
    mismatch = store_mismatch(run.dir, run.config, store, selection)
    if mismatch is None:  # the training store itself (or nothing recorded to compare)
        return (selection if training_store_path(run.config) else None), None
    if mismatch.run_selection is None:
        return None, (f"{run.dir} was trained on {mismatch.run_store or 'an unrecorded store'}, which cannot be read: "
                      f"its atom selection cannot be checked against {store.path} ({atoms(selection)})")
    if mismatch.run_selection != selection:
        return mismatch.run_selection, (f"{run.dir} was trained on {atoms(mismatch.run_selection)} "
                                        f"({mismatch.run_store}), {store.path} holds {atoms(selection)}: "
                                        "its embeddings of these clouds may mean little")
    return mismatch.run_selection, None


def embed_store(run_dir, store=None, *, split: str = "all", checkpoint=None, device="cpu",
                progress: bool = False) -> dict[str, Any]:
    """``{"embeddings", "ids", "splits", "indices", "meta", "warnings"}`` of the clouds of
    ``split`` of ``store`` (default: the run's training store) embedded by the run's
    encoder (``checkpoint`` as :func:`protein_care.runs.load_run`), in store order. A run
    trained on another atom selection than the store's gives a warning, not an error."""
    run = load_run(run_dir, device, checkpoint=checkpoint)
    config = run.config
    store = _open_embedded_store(run_dir, config, store)
    indices = split_indices(store, split)
    if len(indices) == 0:
        raise ValueError(f"split {split!r} of {store.path} has no clouds")
    selection = store_selection(store.meta)
    run_selection, warning = _selection_warning(run, store, selection)
    warnings = [warning] if warning else []
    sizes, most = np.diff(store.offsets)[indices], largest_cloud(config)
    if (sizes > most).any():
        warnings.append(f"{int((sizes > most).sum())} clouds have more than {most:,} points: each is embedded alone, "
                        "which may need much memory")

    uses_features = bool(getattr(run.encoder, "uses_residue_features", False))
    length_scale = float(config["length_scale"])
    embeddings = np.zeros((len(indices), int(getattr(run.encoder, "dim", 0))), np.float32)
    bar = tqdm(total=len(indices), desc="embedding", unit="cloud", disable=not progress)
    for batch in size_batches(sizes, lambda n: clouds_per_batch(config, n)):
        chosen = indices[batch].tolist()
        coords = [store[i] for i in chosen]
        features = [store.features(i) for i in chosen] if uses_features else None
        embeddings[batch] = embed_clouds(run.encoder, coords, features, length_scale=length_scale,
                                         batch_size=len(chosen), device=device).numpy()
        bar.update(len(chosen))
    bar.close()
    split_of = np.full(len(store), "", dtype=object)
    for name in store.meta.get("split_names", SPLIT_NAMES):
        split_of[store.split(name)] = name
    return {
        "embeddings": embeddings,
        "ids": np.array([store.ids[i] for i in indices.tolist()]),
        "splits": split_of[indices].astype(str),
        "indices": indices.astype(np.int64),
        "meta": _meta(run, store, split, selection, run_selection, embeddings.shape[1], warnings),
        "warnings": warnings,
    }


def _meta(run, store, split: str, selection: str, run_selection: str | None, dim: int, warnings: list[str]) -> dict:
    """What the file's ``meta`` records (absolute paths, so that it holds wherever the file goes)."""
    config = model_config(run.config)
    meta = {
        "run_dir": str(Path(run.dir).resolve()),
        "checkpoint": str(Path(run.checkpoint).resolve()) if run.checkpoint is not None else "init",
        "checkpoint_step": run.step, "store": str(Path(store.path).resolve()),
        "store_config_hash": store.meta.get("config_hash"), "selection": selection,
        "run_selection": run_selection, "split": split, "loss": run.config.get("loss"),
        "encoder": config["encoder"], "embedding": config["embedding"], "dim": dim,
        "length_scale": float(run.config["length_scale"]),
        "pose": "each cloud in its stored orientation, centred on its centroid, divided by length_scale",
        "warnings": warnings, "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if config["embedding"] == "split":  # columns [0, dim/2): invariant block; [dim/2, dim): equivariant
        weight = float(config["split_pose_weight"])
        meta["blocks"] = {"invariant": [0, dim // 2], "equivariant": [dim // 2, dim],
                          "scale": {"invariant": (1 - weight) ** 0.5, "equivariant": weight ** 0.5}}
        meta["split_trunks"] = config["split_trunks"]
    return meta


def check_writable(out) -> None:
    """Make ``out``'s folder and try a file there before the work (OSError if it cannot)."""
    probe = temporary_beside(Path(out), ".probe")
    probe.write_bytes(b"")
    probe.unlink()


def write_embeddings(result: dict[str, Any], out) -> Path:
    """Write ``result`` (:func:`embed_store`) to ``out`` as an uncompressed ``.npz``,
    atomically (:func:`data_pipeline.atomic_files.atomic_file`: an interrupted write
    leaves the old file, or none)."""
    with atomic_file(out) as fh:
        np.savez(fh, embeddings=result["embeddings"], ids=result["ids"], splits=result["splits"],
                 indices=result["indices"], meta=np.array(json.dumps(result["meta"], sort_keys=True)))
    return Path(out)

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

Clouds are batched by points (:func:`protein_care.embedding.points_per_batch`), so large
all-atom clouds do not exhaust memory; the file is written atomically.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data_pipeline.splits import SPLIT_NAMES
from protein_care.embedding import embed_clouds, points_per_batch
from protein_care.evaluation.evaluate import open_store, split_indices, training_store_path
from protein_care.provenance import store_mismatch, store_selection
from protein_care.runs import load_run

#: At most this many clouds per encoder call (fewer when their points exceed the budget).
MAX_BATCH = 1024


def point_batches(sizes: np.ndarray, points_per_batch: int, max_batch: int = MAX_BATCH) -> list[slice]:
    """Consecutive slices of clouds whose points sum to at most ``points_per_batch``
    (a larger cloud alone) and that hold at most ``max_batch`` clouds each."""
    out, start, total = [], 0, 0
    for i, n in enumerate(sizes.tolist()):
        if i > start and (total + n > points_per_batch or i - start >= max_batch):
            out.append(slice(start, i))
            start, total = i, 0
        total += n
    if start < len(sizes):
        out.append(slice(start, len(sizes)))
    return out


def embed_store(run_dir, store=None, *, split: str = "all", checkpoint=None, device="cpu",
                progress: bool = False) -> dict[str, Any]:
    """``{"embeddings", "ids", "splits", "indices", "meta", "warnings"}`` of the clouds of
    ``split`` of ``store`` (default: the run's training store) embedded by the run's
    encoder (``checkpoint`` as :func:`protein_care.runs.load_run`). A run trained on
    another atom selection than the store's gives a warning, not an error."""
    run = load_run(run_dir, device, checkpoint=checkpoint)
    config = run.config
    if store is None:
        store = training_store_path(config)
        if not store:
            raise ValueError(f"{run_dir}: the run's config names no training store; pass a store")
    store = open_store(store)
    indices = split_indices(store, split)
    if len(indices) == 0:
        raise ValueError(f"split {split!r} of {store.path} has no clouds")
    selection = store_selection(store.meta)
    warnings = []
    mismatch = store_mismatch(run.dir, config, store, selection, marked="embedded all the same")
    if mismatch is not None and mismatch.run_selection not in (None, selection):
        warnings.append(mismatch.warning)

    sizes = np.diff(store.offsets)[indices]
    uses_features = bool(getattr(run.encoder, "uses_residue_features", False))
    length_scale = float(config["length_scale"])
    budget = points_per_batch(config)
    rows = []
    bar = tqdm(total=len(indices), desc="embedding", unit="cloud", disable=not progress)
    for part in point_batches(sizes, budget):
        chosen = indices[part].tolist()
        coords = [store[i] for i in chosen]
        features = [store.features(i) for i in chosen] if uses_features else None
        rows.append(embed_clouds(run.encoder, coords, features, length_scale=length_scale,
                                 batch_size=len(chosen), device=device).numpy())
        bar.update(len(chosen))
    bar.close()
    split_of = np.full(len(store), "", dtype=object)
    for name in store.meta.get("split_names", SPLIT_NAMES):
        split_of[store.split(name)] = name
    meta = {
        "run_dir": str(run.dir), "checkpoint": str(run.checkpoint) if run.checkpoint else None,
        "checkpoint_step": run.step, "store": str(store.path),
        "store_config_hash": store.meta.get("config_hash"), "selection": selection, "split": split,
        "encoder": config.get("encoder"), "embedding": config.get("embedding"), "loss": config.get("loss"),
        "dim": int(rows[0].shape[1]), "length_scale": length_scale, "pose": "as stored (centred, scaled)",
        "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return {
        "embeddings": np.concatenate(rows).astype(np.float32),
        "ids": np.array([store.ids[i] for i in indices.tolist()]),
        "splits": split_of[indices].astype(str),
        "indices": indices.astype(np.int64),
        "meta": meta,
        "warnings": warnings,
    }


def write_embeddings(result: dict[str, Any], out) -> Path:
    """Write ``result`` (:func:`embed_store`) to ``out`` as an uncompressed ``.npz``,
    atomically: a temporary file beside it, then renamed (an interrupted write leaves
    the old file, or none)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, embeddings=result["embeddings"], ids=result["ids"], splits=result["splits"],
                     indices=result["indices"], meta=np.array(json.dumps(result["meta"], sort_keys=True)))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out

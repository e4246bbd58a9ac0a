"""A run + a store → the metrics JSON of ``protein-care evaluate``.

    >>> result = evaluate_run("runs/care", "stores/pdb", split="test")   # doctest: +SKIP
    >>> result["pc1_angle_deg_mean"], result["baseline"]["pc1_angle_deg_mean"]  # doctest: +SKIP

The run's encoder (and, next to it, the same architecture at initialisation) is frozen
and evaluated by :func:`~protein_care.evaluation.metrics_core.evaluate_embedder`. The
PC1 probes are fitted on the run's *training* store's train split and reported on the
requested store/split. Reports and apps read the JSON; they never recompute it.
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from protein_care.evaluation.metrics_core import METRIC_KEYS, evaluate_embedder

SCHEMA = "protein-care/evaluate/1"
SPLITS = ("train", "val", "test", "all")
METRICS_NAME = "metrics.json"

_BASELINE_CACHE: OrderedDict[str, tuple[dict, dict]] = OrderedDict()
_BASELINE_CACHE_SIZE = 16


def open_store(store):
    """A :class:`~data_pipeline.store.PointCloudStore` from a path (or one as is)."""
    from data_pipeline.store import PointCloudStore

    return store if isinstance(store, PointCloudStore) else PointCloudStore(store)


def training_store_path(config: dict) -> str | None:
    """The store a run was trained on (absolute ``store_path`` when recorded)."""
    return config.get("store_path") or config.get("store")


def split_indices(store, split: str) -> np.ndarray:
    """Indices of ``split`` (``"all"``: every cloud)."""
    if split == "all":
        return np.arange(len(store))
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.asarray(store.split(split))


def _subsample(indices: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or len(indices) <= limit:
        return indices
    return np.sort(rng.choice(indices, size=limit, replace=False))


def _clouds(store, indices, with_features: bool):
    """Copies of the clouds (store views are read-only memory maps, which torch warns
    about when wrapping them)."""
    coords = [np.array(store[int(i)]) for i in indices]
    features = [np.array(store.features(int(i))) for i in indices] if with_features else None
    return coords, features


def _finite(value):
    """JSON has no NaN/inf: map them to None, recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate_run(
    run_dir,
    store=None,
    *,
    split: str = "test",
    seed: int = 0,
    n_rotations: int = 20,
    checkpoint=None,
    device="cpu",
    include_baseline: bool = True,
    probe_rotations: int = 8,
    probe_clouds: int | None = 256,
    max_clouds: int | None = None,
    retrieval_draws: int = 3,
    n_compositions: int = 10,
    mlp_probe: bool = True,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Evaluate a run's frozen encoder; returns the JSON-ready result.

    Args:
        run_dir: a ``protein-care train`` folder.
        store: a store path or :class:`~data_pipeline.store.PointCloudStore`; ``None``
            = the run's training store (``config["store"]``).
        split: ``train``, ``val``, ``test`` or ``all`` of ``store``.
        seed: seeds every rotation and subsample (deterministic given it).
        n_rotations: rotations shared by the set for Wahba/γ_f/composition (≥ 20 in
            reports; fewer for quick checks).
        checkpoint: ``None``/``"latest"``, ``"step_K"``, an int K, ``"init"`` or a path
            (:func:`protein_care.runs.load_run`).
        device: where the encoder runs (``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or a torch device).
        include_baseline: also evaluate the same architecture at initialisation
            (``baseline``; cached in-process, so several checkpoints of one run pay once).
        probe_rotations: Haar rotations per probe-training cloud.
        probe_clouds: at most this many clouds of the training store's train split
            fit the PC1 probes (``None``: all).
        max_clouds: evaluate at most this many clouds of the split (``None``: all).
        retrieval_draws: draws of two rotations per cloud for retrieval.
        n_compositions: rotation pairs (a, b) of the composition check (each costs one
            more pass over the set; the first ``n_rotations`` passes are shared).
        mlp_probe: also fit the MLP probe.
        batch_size: clouds per encoder call.

    Cost: the encoder sees the evaluated set 1 + n_rotations + n_compositions +
    2·retrieval_draws times (47 with the defaults) and probe_clouds × probe_rotations
    training clouds (2,048), twice with the baseline (once per process and settings:
    cached). For many checkpoints on a CPU lower ``n_rotations``/``n_compositions`` or
    ``probe_clouds``, or evaluate on a GPU.
    """
    from protein_care.embedding import embed_clouds
    from protein_care.runs import initial_encoder, load_run

    from protein_care.devices import resolve_device

    t_start = time.perf_counter()
    device = resolve_device(device) if isinstance(device, str) else device
    run = load_run(run_dir, device, checkpoint=checkpoint)
    config = run.config
    warnings: list[str] = []
    train_path = training_store_path(config)
    if store is None and not train_path:
        raise ValueError(f"{run_dir}: the run's config names no training store; pass a store")
    eval_store = open_store(store if store is not None else train_path)
    rng = np.random.default_rng([seed, 1])
    indices = _subsample(split_indices(eval_store, split), max_clouds, rng)
    if len(indices) < 2:
        raise ValueError(f"split {split!r} of {eval_store.path} has {len(indices)} clouds; need at least 2")

    probe_store = eval_store
    if train_path and Path(train_path).resolve() != Path(eval_store.path).resolve():
        try:
            probe_store = open_store(train_path)
        except Exception as error:  # a moved training store: fit on the evaluated store instead
            warnings.append(f"training store {train_path} unavailable ({error}); probes fitted on {eval_store.path}")
    probe_indices = _subsample(split_indices(probe_store, "train"), probe_clouds, np.random.default_rng([seed, 2]))
    if len(probe_indices) < 2:
        raise ValueError(f"the train split of {probe_store.path} has {len(probe_indices)} clouds; the PC1 probe needs at least 2")

    uses_features = bool(getattr(run.encoder, "uses_residue_features", False))
    coords, features = _clouds(eval_store, indices, uses_features)
    probe_coords, probe_features = _clouds(probe_store, probe_indices, uses_features)
    settings = dict(
        seed=seed, n_rotations=n_rotations, n_compositions=n_compositions, probe_rotations=probe_rotations,
        retrieval_draws=retrieval_draws, mlp_probe=mlp_probe,
    )

    def evaluate_encoder(encoder):
        embed = functools.partial(
            embed_clouds, encoder, length_scale=float(config["length_scale"]), batch_size=batch_size, device=device
        )
        return evaluate_embedder(
            embed, coords, features, probe_coords=probe_coords, probe_features=probe_features, **settings
        )

    metrics, timings = evaluate_encoder(run.encoder)
    baseline, baseline_timings = None, None
    if include_baseline:
        key = repr((sorted(config.items()), str(eval_store.path), indices.tolist(), str(probe_store.path),
                    probe_indices.tolist(), sorted(settings.items())))
        if key in _BASELINE_CACHE:
            baseline, baseline_timings = _BASELINE_CACHE[key]
            _BASELINE_CACHE.move_to_end(key)
            baseline_timings = {**baseline_timings, "cached": True}
        else:
            baseline, baseline_timings = evaluate_encoder(initial_encoder(config).to(device).eval())
            _BASELINE_CACHE[key] = (baseline, baseline_timings)
            while len(_BASELINE_CACHE) > _BASELINE_CACHE_SIZE:
                _BASELINE_CACHE.popitem(last=False)

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "run_dir": str(run.dir),
        "checkpoint": str(run.checkpoint) if run.checkpoint is not None else None,
        "checkpoint_step": run.step,
        "loss": config.get("loss"),
        "encoder": config.get("encoder"),
        "store": str(eval_store.path),
        "split": split,
        "n_clouds": int(len(indices)),
        "probe_store": str(probe_store.path),
        "probe_split": "train",
        "probe_clouds": int(len(probe_indices)),
        "seed": seed,
        "n_rotations": n_rotations,
        "n_compositions": min(n_compositions, n_rotations),
        "probe_rotations": probe_rotations,
        "retrieval_draws": retrieval_draws,
        "device": str(device),
        **metrics,
        "baseline": baseline,
        "timings": {"run": timings, "baseline": baseline_timings, "total_s": time.perf_counter() - t_start},
        "warnings": warnings,
    }
    return _finite(result)


def write_metrics(result: dict, path) -> Path:
    """Write the result JSON atomically (temporary file + rename)."""
    from protein_care.runs import write_json_atomic

    write_json_atomic(_finite(result), path)
    return Path(path)


# --------------------------------------------------------------------------- the table

_REFERENCE = {
    "pc1_angle_deg_mean": "chance {chance:.1f}°",
    "pc1_mlp_angle_deg_mean": "chance {chance:.1f}°",
    "pc1_well_defined_angle_deg_mean": "λ2 ≤ 0.8 λ1 only",
    "wahba_relative_mean": "0 orthogonal map, 1 no better than I",
    "embedding_displacement_mean": "≈ 0: rotation invariant",
    "gamma_f_mean": "lower = equivariant",
    "retrieval_top1": "chance {retrieval_chance:.3f}",
}
_TABLE_KEYS = tuple(k for k in METRIC_KEYS if k not in ("pc1_chance_deg", "retrieval_chance"))


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def format_table(result: dict) -> str:
    """A readable table: one row per metric, run next to the random-init baseline."""
    baseline = result.get("baseline") or {}
    chance = {"chance": result.get("pc1_chance_deg") or 0.0, "retrieval_chance": result.get("retrieval_chance") or 0.0}
    head = (
        f"{result.get('run_dir')} @ step {result.get('checkpoint_step')} on {result.get('store')} "
        f"[{result.get('split')}, {result.get('n_clouds')} clouds, seed {result.get('seed')}]"
    )
    rows = [("metric", "run", "baseline" if baseline else "", "reference")]
    for key in _TABLE_KEYS:
        rows.append((key, _fmt(result.get(key)), _fmt(baseline.get(key)) if baseline else "",
                     _REFERENCE.get(key, "").format(**chance)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head] + ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(2, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

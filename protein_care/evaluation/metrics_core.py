"""All evaluation metrics of one embedding function on one set of clouds.

:func:`evaluate_embedder` knows nothing about runs, checkpoints or stores: it takes an
``embed(coords, features, *, rotations=None) -> Tensor[B, d]`` callable (the encoder
behind :func:`protein_care.embedding.embed_clouds`, or a stand-in in tests), the
clouds to evaluate and the clouds to fit the PC1 probes on, and returns the metric
dictionary whose keys the JSON, the reports and the apps read (:data:`METRIC_KEYS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from protein_care.evaluation.equivariance import composition_errors, nanmean_or_none, wahba_metrics
from protein_care.evaluation.probes import (
    PC1_CHANCE_DEG,
    RIDGE_LAMBDAS,
    angles_deg,
    fit_mlp_probe,
    fit_ridge_probe,
    principal_axes,
    rotate_axes,
    well_defined,
)
from protein_care.evaluation.retrieval import mean_retrieval, retrieval_chance
from protein_care.geometry import random_rotations

EmbedFn = Callable[..., Tensor]

#: Metric keys, in the order tables list them. Values are floats, or ``None`` where a
#: metric is undefined (an MLP probe not run, γ_f of an encoder that does not move).
METRIC_KEYS: tuple[str, ...] = (
    "pc1_angle_deg_mean",
    "pc1_angle_deg_median",
    "pc1_well_defined_angle_deg_mean",
    "pc1_well_defined_angle_deg_median",
    "pc1_mlp_angle_deg_mean",
    "pc1_mlp_angle_deg_median",
    "pc1_mlp_well_defined_angle_deg_mean",
    "pc1_mlp_well_defined_angle_deg_median",
    "pc1_chance_deg",
    "pc1_ridge_lambda",
    "pc1_well_defined_fraction",
    "wahba_error_mean",
    "wahba_error_max",
    "wahba_relative_mean",
    "embedding_displacement_mean",
    "gamma_f_mean",
    "composition_error_mean",
    "retrieval_top1",
    "retrieval_chance",
)


def _median_or_none(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _angle_summary(prefix: str, angles: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    return {
        f"{prefix}_angle_deg_mean": _mean_or_none(angles),
        f"{prefix}_angle_deg_median": _median_or_none(angles),
        f"{prefix}_well_defined_angle_deg_mean": _mean_or_none(angles[mask]),
        f"{prefix}_well_defined_angle_deg_median": _median_or_none(angles[mask]),
    }


def evaluate_embedder(
    embed: EmbedFn,
    coords: Sequence,
    features: Sequence | None,
    *,
    probe_coords: Sequence,
    probe_features: Sequence | None,
    seed: int = 0,
    n_rotations: int = 20,
    n_compositions: int = 10,
    probe_rotations: int = 8,
    retrieval_draws: int = 3,
    mlp_probe: bool = True,
    probe_val_fraction: float = 0.2,
    ridge_lambdas: tuple[float, ...] = RIDGE_LAMBDAS,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Every metric of ``embed`` on ``coords``; returns ``(metrics, timings_s)``.

    - PC1 probes: fitted on ``probe_coords``, each under ``probe_rotations`` Haar
      rotations, split by cloud into probe-train and probe-validation
      (``probe_val_fraction``; λ and the MLP's stopping epoch are chosen there);
      reported on ``coords`` under the 2 × ``retrieval_draws`` independent random
      rotations per cloud drawn for retrieval.
    - Wahba, displacement, γ_f: for ``n_rotations`` Haar rotations a_k shared by the
      set. Composition: for the first ``n_compositions`` of them, b_k = a_{k+1}
      (cyclically) and the set rotated by b_k∘a_k.
    - Retrieval: ``retrieval_draws`` draws of two per-cloud rotations.

    Deterministic given ``seed`` (the same seed gives the same rotations and probe
    split for every encoder, so a run and its baseline are compared on equal terms).
    """
    n = len(coords)
    if n < 2:
        raise ValueError(f"need at least 2 clouds to evaluate, got {n}")
    if len(probe_coords) < 2:
        raise ValueError(f"need at least 2 clouds to fit the PC1 probe, got {len(probe_coords)}")
    if min(n_rotations, n_compositions, probe_rotations, retrieval_draws) < 1:
        raise ValueError(
            f"n_rotations, n_compositions, probe_rotations and retrieval_draws must be >= 1, got "
            f"{n_rotations}, {n_compositions}, {probe_rotations}, {retrieval_draws}"
        )
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def run_embed(cs, fs, rotations):
        return embed(cs, fs, rotations=rotations).detach().cpu().double()

    # --- rotations shared by the set: Wahba, γ_f, composition
    a = random_rotations(n_rotations, generator=generator, dtype=torch.float64)
    F = run_embed(coords, features, None)
    F_a = torch.stack([run_embed(coords, features, r.expand(n, 3, 3).float()) for r in a])
    n_comp = min(n_compositions, n_rotations)
    nxt = [(k + 1) % n_rotations for k in range(n_comp)]  # b_k = a_{k+1}: its embeddings are F_a[k+1]
    F_ba = torch.stack([run_embed(coords, features, (a[j] @ a[k]).expand(n, 3, 3).float()) for k, j in enumerate(nxt)])

    # --- per-cloud rotations: retrieval and the probe's test set
    views, view_rot = [], []
    for _ in range(retrieval_draws):
        pair = []
        for _ in range(2):
            r = random_rotations(n, generator=generator, dtype=torch.float64)
            pair.append(run_embed(coords, features, r.float()))
            view_rot.append(r)
        views.append(pair)

    # --- probe training set: clouds of the probe store under probe_rotations each
    n_probe = len(probe_coords)
    rep_coords = [c for c in probe_coords for _ in range(probe_rotations)]
    rep_features = None if probe_features is None else [f for f in probe_features for _ in range(probe_rotations)]
    probe_rot = random_rotations(len(rep_coords), generator=generator, dtype=torch.float64)
    E_probe = run_embed(rep_coords, rep_features, probe_rot.float())
    timings["embed_s"] = time.perf_counter() - start

    # --- equivariance
    t0 = time.perf_counter()
    wahba = wahba_metrics(F, F_a)
    metrics: dict[str, Any] = dict(wahba.summary())
    metrics["composition_error_mean"] = nanmean_or_none(composition_errors(F, F_a[:n_comp], F_a[nxt], F_ba))
    metrics["retrieval_top1"] = mean_retrieval(views)
    metrics["retrieval_chance"] = retrieval_chance(n)
    timings["equivariance_s"] = time.perf_counter() - t0

    # --- PC1 probes
    t0 = time.perf_counter()
    probe_axes = np.stack([principal_axes(c)[0] for c in probe_coords])
    u_probe = rotate_axes(np.repeat(probe_axes, probe_rotations, axis=0), probe_rot)
    order = rng.permutation(n_probe)
    n_val = min(n_probe - 1, max(1, int(round(probe_val_fraction * n_probe))))
    is_val_cloud = np.zeros(n_probe, dtype=bool)
    is_val_cloud[order[:n_val]] = True
    is_val = np.repeat(is_val_cloud, probe_rotations)
    E_np = E_probe.numpy()
    tr, va = (E_np[~is_val], u_probe[~is_val]), (E_np[is_val], u_probe[is_val])

    pcs = [principal_axes(c) for c in coords]
    axes0 = np.stack([p[0] for p in pcs])
    mask_cloud = well_defined(np.stack([p[1] for p in pcs]))
    E_test = torch.cat([v for pair in views for v in pair]).numpy()
    u_test = rotate_axes(np.tile(axes0, (len(view_rot), 1)), torch.cat(view_rot))
    mask = np.tile(mask_cloud, len(view_rot))

    ridge = fit_ridge_probe(*tr, *va, lambdas=ridge_lambdas)
    metrics.update(_angle_summary("pc1", angles_deg(ridge.predict_axes(E_test), u_test), mask))
    metrics["pc1_chance_deg"] = PC1_CHANCE_DEG
    metrics["pc1_ridge_lambda"] = ridge.lam
    metrics["pc1_well_defined_fraction"] = float(mask_cloud.mean())
    if mlp_probe:
        mlp = fit_mlp_probe(*tr, *va, seed=seed, ridge=ridge)
        mlp_summary = _angle_summary("pc1_mlp", angles_deg(mlp.predict_axes(E_test), u_test), mask)
        metrics["pc1_mlp_epochs"] = mlp.best_epoch
    else:
        mlp_summary = dict.fromkeys(_angle_summary("pc1_mlp", np.zeros(0), np.zeros(0, bool)), None)
        metrics["pc1_mlp_epochs"] = None
    metrics.update(mlp_summary)
    timings["probe_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    ordered = {k: metrics[k] for k in METRIC_KEYS}
    ordered.update({k: v for k, v in metrics.items() if k not in ordered})
    return ordered, timings

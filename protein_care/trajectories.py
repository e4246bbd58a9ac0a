"""Trajectories through embedding space (CARE §5.1, Fig. 2a, Figs. 15–18).

Each protein is rotated from 0 to 2π about the x, y and z axes (about its centroid),
every step is embedded with the frozen encoder, and the points are projected to 2-D (or
3-D) with one PCA fitted on all trajectory points of a run. CARE should trace closed,
regular loops; invariant objectives collapse each loop to a point or a tangle.

    >>> traj = compute_trajectories(run.encoder, store, ["1ABC"], steps=64,
    ...                             length_scale=run.config["length_scale"])  # doctest: +SKIP
    >>> proj = project_trajectories(traj, n_components=2)                     # doctest: +SKIP
    >>> loop_regularity(traj)["speed_cv"]                                     # doctest: +SKIP

Used by ``protein-care plot``, the demo report and the trajectory explorer app.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from protein_care.geometry import axis_rotation

AXES = ("x", "y", "z")


@dataclass
class Trajectories:
    """Embeddings of P proteins rotated about A axes at S angles.

    ``embeddings`` ``(P, A, S, d)`` float64; ``angles`` ``(S,)`` radians from 0 to 2π
    inclusive (the first and last step are the same pose, so a plotted loop closes).
    """

    ids: list[str]
    axes: tuple[str, ...]
    angles: np.ndarray
    embeddings: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.embeddings.shape)


@dataclass
class Projection:
    """``points`` ``(P, A, S, k)`` of a run's trajectories in the PCA basis fitted on all
    of them; ``components`` ``(k, d)``, ``mean`` ``(d,)``, ``explained_variance_ratio``
    ``(k,)`` (fraction of the total variance of the run's trajectory points)."""

    points: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray


def _resolve_clouds(store_or_coords, ids, features):
    """``(ids, coords, features)`` from a store (``ids`` looked up in ``store.ids``), a
    mapping id → coords, or a sequence of coords aligned with ``ids``."""
    if hasattr(store_or_coords, "ids") and hasattr(store_or_coords, "features"):
        store = store_or_coords
        position = {cloud_id: k for k, cloud_id in enumerate(store.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise KeyError(f"ids not in the store: {', '.join(map(str, missing))}")
        coords = [np.array(store[position[i]]) for i in ids]  # copies: store views are read-only
        feats = [np.array(store.features(position[i])) for i in ids] if features is None else features
        return list(ids), coords, feats
    if isinstance(store_or_coords, Mapping):
        return list(ids), [np.asarray(store_or_coords[i]) for i in ids], features
    coords = list(store_or_coords)
    ids = list(ids) if ids is not None else [str(k) for k in range(len(coords))]
    if len(ids) != len(coords):
        raise ValueError(f"{len(ids)} ids for {len(coords)} clouds")
    return ids, [np.asarray(c) for c in coords], features


def rotation_series(axes: Sequence[str], steps: int, *, dtype=torch.float32) -> tuple[np.ndarray, torch.Tensor]:
    """Angles ``(S,)`` from 0 to 2π inclusive and rotations ``(A·S, 3, 3)`` about each
    axis in turn."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    angles = torch.linspace(0.0, 2 * math.pi, steps, dtype=torch.float64)
    rotations = torch.cat([axis_rotation(a, angles) for a in axes]).to(dtype)
    return angles.numpy(), rotations


def compute_trajectories(
    encoder,
    store_or_coords,
    ids: Sequence[str] | None,
    *,
    steps: int = 64,
    axes: Sequence[str] = AXES,
    length_scale: float,
    features: Sequence | None = None,
    device="cpu",
    batch_size: int = 256,
    embed: Callable | None = None,
) -> Trajectories:
    """Embed each protein rotated from 0 to 2π about each axis.

    Args:
        encoder: a frozen encoder (``(pos, x, batch, num_graphs) -> (B, d)``).
        store_or_coords: a :class:`~data_pipeline.store.PointCloudStore` (``ids`` are
            cloud IDs of it), a mapping id → coords ``(n, 3)``, or a sequence of coords
            (``ids`` then name them; ``None`` numbers them).
        steps: angles per axis, 0 and 2π included.
        axes: names of the rotation axes.
        length_scale: the run's ``config["length_scale"]``.
        features: residue codes per protein (read from a store when not given).
        embed: override ``embed(coords, features, rotations) -> (S, d)`` for one cloud
            (default :func:`protein_care.embedding.embed_rotation_series`).

    Returns:
        :class:`Trajectories` with ``embeddings`` ``(P, len(axes), steps, d)``.
    """
    ids, coords, feats = _resolve_clouds(store_or_coords, ids, features)
    angles, rotations = rotation_series(axes, steps)
    if embed is None:
        from protein_care.embedding import embed_rotation_series

        def embed(c, f, r):
            return embed_rotation_series(encoder, c, f, r, length_scale=length_scale, batch_size=batch_size, device=device)

    out = []
    for k, c in enumerate(coords):
        f = feats[k] if feats is not None else None
        z = embed(c, f, rotations)  # (A·S, d)
        out.append(torch.as_tensor(z).detach().cpu().double().reshape(len(axes), steps, -1).numpy())
    return Trajectories(list(ids), tuple(axes), angles, np.stack(out))


def project_trajectories(traj: Trajectories, n_components: int = 2, *, center_each_protein: bool = False) -> Projection:
    """PCA (float64 SVD) fitted on all trajectory points of one run, projected to
    ``n_components`` (2 or 3). Components get a deterministic sign (largest |loading|
    positive) so repeated calls draw the same picture.

    With ``center_each_protein`` each protein's points are first centred on their own
    mean, so the PCA shows how the rotations move each embedding rather than how far
    apart the proteins are (which otherwise takes almost all of the variance)."""
    if n_components not in (2, 3):
        raise ValueError(f"n_components must be 2 or 3, got {n_components}")
    e = traj.embeddings
    if center_each_protein:
        e = e - e.mean(axis=(1, 2), keepdims=True)
    flat = e.reshape(-1, e.shape[-1])
    mean = flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    k = min(n_components, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    if k < n_components:  # fewer dimensions than components: pad with zeros
        comps = np.vstack([comps, np.zeros((n_components - k, comps.shape[1]))])
    var = s**2
    total = var.sum()
    ratio = np.zeros(n_components)
    ratio[:k] = var[:k] / total if total > 0 else 0.0
    points = (e - mean) @ comps.T
    return Projection(points, comps, mean, ratio)


def loop_regularity(traj: Trajectories) -> dict[str, np.ndarray]:
    """Per-trajectory shape of the loops, each an array ``(P, A)``:

    - ``diameter``: the largest distance between two points of the loop.
    - ``closure``: ‖e(2π) − e(0)‖ / diameter. The last step is the first pose again, so
      any deterministic encoder closes its loops; this checks the pipeline (rotation
      about the centroid, no state), not equivariance.
    - ``speed_cv``: coefficient of variation of the step lengths ‖e(θ_{k+1}) − e(θ_k)‖.
      An orthogonal action ρ(θ) = exp(θΩ) moves at constant speed: 0 for an exactly
      equivariant encoder; large for a tangle.
    - ``planarity``: fraction of the loop's variance in its top 2 principal components
      (1 for a circle or an ellipse; an equivariant encoder mixing frequencies 1 and 2,
      as on the second moments, is a regular loop that is not planar).
    - ``path_over_diameter``: loop length / diameter (π for a circle).

    Undefined values (a loop that does not move) are NaN.
    """
    e = traj.embeddings  # (P, A, S, d)
    steps = np.linalg.norm(np.diff(e, axis=2), axis=-1)  # (P, A, S-1)
    centred = e - e.mean(axis=2, keepdims=True)
    sq = (centred * centred).sum(axis=-1)  # pairwise distances through the Gram matrix: (P, A, S, S)
    dist2 = sq[..., :, None] + sq[..., None, :] - 2 * np.einsum("pasd,patd->past", centred, centred)
    diameter = np.sqrt(np.clip(dist2, 0.0, None).max(axis=(-1, -2)))
    still = diameter < 1e-9
    safe = np.where(still, 1.0, diameter)
    closure = np.where(still, np.nan, np.linalg.norm(e[:, :, -1] - e[:, :, 0], axis=-1) / safe)
    mean_step = steps.mean(axis=-1)
    speed_cv = np.where(still, np.nan, steps.std(axis=-1) / np.where(mean_step > 0, mean_step, 1.0))
    sv = np.linalg.svd(centred, compute_uv=False)  # (P, A, min(S, d))
    var = sv**2
    total = var.sum(axis=-1)
    planarity = np.where(still, np.nan, var[..., :2].sum(axis=-1) / np.where(total > 0, total, 1.0))
    path = np.where(still, np.nan, steps.sum(axis=-1) / safe)
    return {"diameter": diameter, "closure": closure, "speed_cv": speed_cv, "planarity": planarity,
            "path_over_diameter": path}


def regularity_summary(traj: Trajectories) -> dict[str, float | None]:
    """Means over all loops of :func:`loop_regularity` (None where undefined), with
    keys ``loop_closure_mean``, ``loop_speed_cv_mean``, ``loop_planarity_mean``,
    ``loop_diameter_mean``."""
    reg = loop_regularity(traj)
    out: dict[str, float | None] = {}
    for key in ("closure", "speed_cv", "planarity", "diameter"):
        v = reg[key][np.isfinite(reg[key])]
        out[f"loop_{key}_mean"] = float(v.mean()) if v.size else None
    return out


def sample_ids(store, n: int = 3, *, seed: int = 0, split: str = "test") -> list[str]:
    """``n`` cloud IDs of ``store`` drawn with ``seed``: from ``split`` when it has at
    least ``n`` clouds, otherwise from the whole store."""
    try:
        pool = np.asarray(store.split(split))
    except (KeyError, ValueError):
        pool = np.arange(len(store))
    if len(pool) < n:
        pool = np.arange(len(store))
    if len(pool) < n:
        raise ValueError(f"the store has {len(pool)} clouds; cannot draw {n}")
    chosen = np.random.default_rng(seed).choice(pool, size=n, replace=False)
    return [str(store.ids[int(i)]) for i in chosen]

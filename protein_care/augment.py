"""Batched augmentations of point clouds on the batch's device (torch only).

A batch is PyG-style: ``pos`` ``(N, 3)``, ``x`` ``(N,)`` or None, ``batch`` ``(N,)``
(the cloud of each point, sorted), ``num_graphs`` B. Every function acts on the whole
batch with tensor ops (``pos' = R[batch] @ pos``); there is no Python loop over clouds.

Order used by the trainer: (point subsets, jitter in Å) → :func:`center_and_scale`
(centre each cloud on its centroid, divide by ONE global length scale) → rotation. The
rotation of a centred cloud is a rotation about its centroid.

- invariance views (:func:`invariance_views`), ``mode``:
  ``rotation``: independent Haar rotations per cloud (the paper);
  ``small-rotation``: per cloud, Haar-distributed rotations conditioned on an angle
  ≤ ``max_angle`` degrees (each view; the two views differ by at most twice that);
  ``points``: no rotation; Gaussian jitter of ``jitter`` Å per coordinate and a random
  subset of ``ceil(keep_fraction · n)`` points per cloud;
  ``posed-points``: ``points`` applied to each cloud in one Haar pose (a rotation about
  its centroid) that both views share: no rotation between the views, but the clouds
  are seen in every pose, not only in their file's frame.
- equivariance views (:func:`equivariance_views`): one Haar rotation per chunk of
  ``B / n_split`` consecutive clouds, shared by the chunk (CARE eq. (3)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from protein_care.geometry import axis_angle_matrices, random_rotations

from protein_care.options import INV_AUGMENTS


class View(NamedTuple):
    """One augmented view of a batch: ``pos`` (N', 3), ``x`` (N',) or None, ``batch`` (N',)."""

    pos: Tensor
    x: Tensor | None
    batch: Tensor
    num_graphs: int


# --------------------------------------------------------------------------- per-cloud statistics


def cloud_sizes(batch: Tensor, num_graphs: int) -> Tensor:
    """Number of points of each cloud, ``(B,)`` long (no device synchronisation, unlike
    ``bincount``)."""
    return torch.zeros(num_graphs, dtype=torch.long, device=batch.device).index_add_(0, batch, torch.ones_like(batch))


def centroids(pos: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Mean point of each cloud, ``(B, 3)`` (zeros for an empty cloud)."""
    index = batch[:, None].expand(-1, pos.shape[1])
    return pos.new_zeros(num_graphs, pos.shape[1]).scatter_reduce_(0, index, pos, "mean", include_self=False)


def center_and_scale(pos: Tensor, batch: Tensor, num_graphs: int, length_scale: float) -> Tensor:
    """``(p − c_b) / s``: each cloud centred on its own centroid ``c_b``, all divided by
    the one global ``length_scale`` s (never a per-cloud scale, which would throw the
    protein's size away)."""
    if not length_scale > 0:
        raise ValueError(f"length_scale must be positive, got {length_scale!r}")
    return (pos - centroids(pos, batch, num_graphs)[batch]).div_(length_scale)


# --------------------------------------------------------------------------- rotations


def rotate_per_cloud(pos: Tensor, batch: Tensor, rotations: Tensor) -> Tensor:
    """``p' = R_{batch(p)} p`` for rotations ``(B, 3, 3)``. About the origin: centre the
    clouds first to rotate each about its centroid."""
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
        raise ValueError(f"rotations must be (B, 3, 3), got {tuple(rotations.shape)}")
    return rotate_points(rotations.to(device=pos.device, dtype=pos.dtype)[batch], pos)


def rotate_points(rotations: Tensor, pos: Tensor) -> Tensor:
    """``p'_n = R_n p_n`` for one rotation per point, ``(N, 3, 3)`` and ``(N, 3)``.

    An elementwise product and a sum over j, not ``einsum``/``bmm``: as a batched
    matrix product of N 3×3 blocks, cuBLAS took 1.6 ms for N = 1.2 M on an H200 and
    the product + sum 0.13 ms (``benchmarks/bench_train.py --profile``)."""
    return (rotations * pos[:, None, :]).sum(-1)


def random_poses(pos: Tensor, batch: Tensor, num_graphs: int, generator: torch.Generator | None = None) -> Tensor:
    """The clouds centred, each turned by its own Haar rotation about its centroid (the
    shared pose of ``posed-points`` views)."""
    poses = random_rotations(num_graphs, generator=generator, device=pos.device, dtype=pos.dtype)
    return rotate_points(poses[batch], pos - centroids(pos, batch, num_graphs)[batch])


def chunk_of_cloud(num_graphs: int, n_split: int, device=None) -> Tensor:
    """The chunk index of each of the B clouds: ``(B,)``, B/n_split consecutive clouds
    per chunk. Raises when n_split does not divide B (never a silent uneven chunk)."""
    if n_split < 1 or num_graphs % n_split:
        raise ValueError(f"n_split={n_split} must divide the number of clouds {num_graphs}")
    return torch.arange(num_graphs, device=device) // (num_graphs // n_split)


def rotate_per_chunk(
    pos: Tensor,
    batch: Tensor,
    num_graphs: int,
    n_split: int,
    generator: torch.Generator | None = None,
    *,
    return_rotations: bool = False,
):
    """One Haar rotation per chunk of ``num_graphs / n_split`` consecutive clouds, shared
    by every cloud of the chunk. Returns ``pos'`` (and the ``(n_split, 3, 3)``
    rotations with ``return_rotations``)."""
    chunk = chunk_of_cloud(num_graphs, n_split, pos.device)
    rotations = random_rotations(n_split, generator=generator, device=pos.device, dtype=pos.dtype)
    out = rotate_per_cloud(pos, batch, rotations[chunk])
    return (out, rotations) if return_rotations else out


def small_rotations(
    n: int,
    max_angle: float,
    *,
    generator: torch.Generator | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``n`` rotations from Haar measure conditioned on a rotation angle ≤ ``max_angle``
    degrees, ``(n, 3, 3)``.

    Under Haar measure on SO(3) the axis is uniform on S² and the angle θ has density
    (1 − cos θ)/π on [0, π], independently. Conditioned on θ ≤ θ_max the CDF is
    F(θ) = (θ − sin θ)/(θ_max − sin θ_max); θ is drawn by inverting it (Newton's
    method in float64, a fixed number of steps: no host synchronisation on a GPU).
    ``max_angle=180`` gives Haar rotations.
    """
    if not 0 < max_angle <= 180:
        raise ValueError(f"max_angle must be in (0, 180] degrees, got {max_angle!r}")
    if device is None and generator is not None:
        device = generator.device
    theta_max = math.radians(max_angle)
    axes = torch.randn(n, 3, generator=generator, device=device, dtype=torch.float64)
    axes = axes / axes.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    target = u * (theta_max - math.sin(theta_max))
    # Newton on g(θ) = θ − sin θ − t (increasing, convex on [0, π]) from (6t)^(1/3), which
    # lies left of the root since θ − sin θ ≤ θ³/6; 8 steps reach ~1e-12 rad even at 0.5°.
    theta = (6 * target).pow(1 / 3).clamp(max=theta_max)
    for _ in range(8):
        slope = (1 - torch.cos(theta)).clamp_min(1e-300)
        theta = (theta - (theta - torch.sin(theta) - target) / slope).clamp(0.0, theta_max)
    return axis_angle_matrices(axes, theta).to(dtype)


# --------------------------------------------------------------------------- point augmentations


def _random_rank_in_cloud(batch: Tensor, num_graphs: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``(rank, sizes)``: each point's position in a uniformly random order of its own
    cloud (0 … n_b − 1), and the cloud sizes ``(B,)``."""
    n = batch.numel()
    sizes = cloud_sizes(batch, num_graphs)
    ptr = torch.cumsum(sizes, 0) - sizes  # first point of each cloud
    score = torch.rand(n, generator=generator, device=batch.device, dtype=torch.float64)
    order = torch.argsort(batch.to(torch.float64) + score)  # a random permutation within each cloud
    rank = torch.empty(n, dtype=torch.long, device=batch.device)
    rank[order] = torch.arange(n, device=batch.device) - ptr[batch[order]]
    return rank, sizes


def random_subsets(batch: Tensor, num_graphs: int, keep_fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """A boolean mask keeping ``ceil(keep_fraction · n_b)`` random points of each cloud
    (at least one of a non-empty cloud); order within a cloud is preserved."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction!r}")
    if keep_fraction == 1 or batch.numel() == 0:
        return torch.ones(batch.numel(), dtype=torch.bool, device=batch.device)
    rank, sizes = _random_rank_in_cloud(batch, num_graphs, generator)
    keep = torch.ceil(sizes.to(torch.float64) * keep_fraction).long().clamp_min(1)
    return rank < keep[batch]


def cap_points(pos: Tensor, x: Tensor | None, batch: Tensor, num_graphs: int, max_points: int,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
    """At most ``max_points`` random points of each cloud (all of a smaller cloud), the
    order within a cloud kept; 0 keeps everything. Training draws the subset once per
    step, before the views, so every view of a cloud (both equivariance views too) is
    made from the same points."""
    if max_points < 0:
        raise ValueError(f"max_points must be >= 0, got {max_points!r}")
    if max_points == 0 or batch.numel() == 0:
        return pos, x, batch
    mask = _random_rank_in_cloud(batch, num_graphs, generator)[0] < max_points
    return pos[mask], (x[mask] if x is not None else None), batch[mask]


def _points_view(pos, x, batch, num_graphs, length_scale, jitter, keep_fraction, generator) -> View:
    mask = random_subsets(batch, num_graphs, keep_fraction, generator)
    pos, batch = pos[mask], batch[mask]
    x = x[mask] if x is not None else None
    if jitter > 0:
        pos = pos + jitter * torch.randn(pos.shape, generator=generator, device=pos.device, dtype=pos.dtype)
    return View(center_and_scale(pos, batch, num_graphs, length_scale), x, batch, num_graphs)


def invariance_views(
    pos: Tensor,
    x: Tensor | None,
    batch: Tensor,
    num_graphs: int,
    *,
    length_scale: float,
    mode: str = "rotation",
    generator: torch.Generator | None = None,
    max_angle: float = 30.0,
    jitter: float = 0.5,
    keep_fraction: float = 0.8,
) -> tuple[View, View]:
    """The two invariance views of a batch of raw clouds (Å), each centred and scaled.

    ``mode``: ``rotation`` (independent Haar rotation per cloud and view),
    ``small-rotation`` (independent rotation per cloud and view with angle ≤
    ``max_angle`` degrees, Haar-conditioned), ``points`` (no rotation: jitter of
    ``jitter`` Å per coordinate and a subset keeping ``keep_fraction`` of each cloud),
    ``posed-points`` (``points`` of the clouds turned about their centroids by one Haar
    rotation per cloud, the same in both views).
    """
    if mode not in INV_AUGMENTS:
        raise ValueError(f"inv_augment must be one of {INV_AUGMENTS}, got {mode!r}")
    if mode in ("points", "posed-points"):
        if mode == "posed-points":
            pos = random_poses(pos, batch, num_graphs, generator)
        return tuple(  # type: ignore[return-value]
            _points_view(pos, x, batch, num_graphs, length_scale, jitter, keep_fraction, generator) for _ in range(2)
        )
    centred = center_and_scale(pos, batch, num_graphs, length_scale)
    views = []
    for _ in range(2):
        if mode == "rotation":
            rotations = random_rotations(num_graphs, generator=generator, device=pos.device, dtype=pos.dtype)
        else:
            rotations = small_rotations(num_graphs, max_angle, generator=generator, device=pos.device, dtype=pos.dtype)
        views.append(View(rotate_per_cloud(centred, batch, rotations), x, batch, num_graphs))
    return views[0], views[1]


def equivariance_views(
    pos: Tensor,
    x: Tensor | None,
    batch: Tensor,
    num_graphs: int,
    *,
    length_scale: float,
    n_split: int,
    generator: torch.Generator | None = None,
) -> tuple[View, View]:
    """The two equivariance views: clouds centred and scaled, then each view rotated by
    one Haar rotation per chunk of ``num_graphs / n_split`` consecutive clouds."""
    centred = center_and_scale(pos, batch, num_graphs, length_scale)
    return tuple(  # type: ignore[return-value]
        View(rotate_per_chunk(centred, batch, num_graphs, n_split, generator), x, batch, num_graphs) for _ in range(2)
    )


def concat_views(views) -> View:
    """Stack views into one batch (clouds of view k get indices k·B … k·B + B − 1), so
    one forward pass embeds them all; split the output with ``.chunk(len(views))``."""
    pos, xs, batches, total = [], [], [], 0
    for view in views:
        pos.append(view.pos)
        xs.append(view.x)
        batches.append(view.batch + total)
        total += view.num_graphs
    x = None if any(v is None for v in xs) else torch.cat(xs)
    return View(torch.cat(pos), x, torch.cat(batches), total)

"""The views of one training step, built as ONE stacked batch with few tensor ops.

What each view does to each cloud is :mod:`protein_care.augment`'s (tested there function
by function): ``rotation`` a Haar rotation per cloud, ``small-rotation`` a rotation of
angle ≤ ``max_angle`` per cloud, ``points`` a random subset and jitter (no rotation),
``posed-points`` the same in one Haar pose per cloud shared by every such view of the
step, ``chunk`` one Haar rotation per chunk of B / n_split consecutive clouds (CARE eq. (3)).
The trainer's step needs V of them (2, 4 or 6) stacked into one batch of V·B clouds for
its single forward pass (view k holds clouds k·B … k·B + B − 1).

Built view by view that costs about 260 tensor ops per step; on a GPU every op costs
~10 µs of host time whatever its size, so for a small encoder the data path, not the
arithmetic, dominated the step (37 % at batch 64 on an H100). Here the V views are V
copies of the B clouds treated as one batch: the clouds are centred once, every Haar
rotation of the step (per cloud and per chunk) comes from one draw, one gather and one
batched product rotate every point of every rotated view, and the point-augmented views
draw their subsets and jitter for all copies at once (``benchmarks/bench_train.py``
counts the ops of both paths side by side). On an H200 the step's views then cost
0.6–0.9 ms for 64–1,024 clouds, once the per-point rotation stopped being a batched
matrix product (:func:`~protein_care.augment.rotate_points`).

Those ~45 ops are still launch-bound on a GPU (≈ 13 % of a batch-64 step), so the trainer
makes the views of W consecutive steps together (``--view-window``,
``Trainer.make_window_views``): the same ops over W·B clouds (the chunks stay inside
each step's B clouds), one sort that puts each step's points together, then each step's
views are slices (:func:`split_steps`). W = 1 is exactly the one-step path.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from protein_care.augment import View, center_and_scale, random_poses, random_subsets, rotate_points, small_rotations
from protein_care.device_constants import cached_tensor
from protein_care.geometry import random_rotations

VIEW_KINDS = ("rotation", "small-rotation", "points", "posed-points", "chunk")
POINT_KINDS = ("points", "posed-points")  # no rotation between a cloud's views of these kinds


class StackedViews(NamedTuple):
    """``num_views`` views of ``num_graphs // num_views`` clouds each, stacked view-major:
    ``pos`` (N, 3), ``x`` (N,) or None, ``batch`` (N,) sorted, view k's clouds are
    k·B … k·B + B − 1 and its points are contiguous."""

    pos: Tensor
    x: Tensor | None
    batch: Tensor
    num_graphs: int
    num_views: int

    def views(self) -> list[View]:
        """The views one by one (cloud indices 0 … B − 1 in each); synchronises on a GPU."""
        b = self.num_graphs // self.num_views
        counts = torch.bincount(self.batch // b, minlength=self.num_views).tolist()
        out, start = [], 0
        for k, count in enumerate(counts):
            part = slice(start, start + count)
            x = self.x[part] if self.x is not None else None
            out.append(View(self.pos[part], x, self.batch[part] - k * b, b))
            start += count
        return out


def step_view_kinds(inv_augment: str, *, equivariance: bool, split: bool) -> list[str]:
    """The kinds of a step's views, in the order the loss reads them: (for the split
    embedding, block A's two Haar views), the two invariance views, and the two
    per-chunk equivariance views when the loss has an equivariance term."""
    kinds = ["rotation", "rotation"] if split else []
    kinds += [inv_augment, inv_augment]
    return kinds + (["chunk", "chunk"] if equivariance else [])


def stacked_views(
    pos: Tensor,
    x: Tensor | None,
    batch: Tensor,
    num_graphs: int,
    kinds: list[str],
    *,
    length_scale: float,
    n_split: int = 1,
    generator: torch.Generator | None = None,
    max_angle: float = 30.0,
    jitter: float = 0.5,
    keep_fraction: float = 0.8,
) -> StackedViews:
    """The views ``kinds`` of a batch of raw clouds (Å) of ``num_graphs`` clouds, each
    view centred on each cloud's centroid and divided by the one ``length_scale``."""
    unknown = [k for k in kinds if k not in VIEW_KINDS]
    if unknown or not kinds:
        raise ValueError(f"view kinds must be a non-empty list of {VIEW_KINDS}, got {kinds!r}")
    if "chunk" in kinds and (n_split < 1 or num_graphs % n_split):
        raise ValueError(f"n_split={n_split} must divide the number of clouds {num_graphs}")
    b = num_graphs
    rotated = any(kind not in POINT_KINDS for kind in kinds)
    rotation_of_view = _draw_rotations(kinds, b, n_split, max_angle, generator, pos) if rotated else None
    posed = random_poses(pos, batch, b, generator) if "posed-points" in kinds else None
    centred = None
    parts = []
    for first, count, family in _runs(kinds):
        if family in POINT_KINDS:
            source = posed if family == "posed-points" else pos
            parts.append(_points_views(source, x, batch, b, count, length_scale, jitter, keep_fraction, generator))
        else:
            if centred is None:
                centred = center_and_scale(pos, batch, b, length_scale)
            rotations = rotation_of_view if count == len(kinds) else rotation_of_view[first * b:(first + count) * b]
            parts.append(_rotated_views(centred, x, batch, b, rotations))
        if first:  # the run's clouds follow those of the views before it
            parts[-1] = (parts[-1][0], parts[-1][1], parts[-1][2] + first * b)
    if len(parts) == 1:
        out_pos, out_x, out_batch = parts[0]
    else:
        out_pos = torch.cat([p[0] for p in parts])
        out_x = None if x is None else torch.cat([p[1] for p in parts])
        out_batch = torch.cat([p[2] for p in parts])
    return StackedViews(out_pos, out_x, out_batch, len(kinds) * b, len(kinds))


def _runs(kinds: list[str]):
    """``(first view, number of views, family)`` for each run of consecutive views of
    the same family (``points``, ``posed-points`` or rotated)."""
    runs, start = [], 0
    family = lambda kind: kind if kind in POINT_KINDS else "rotated"  # noqa: E731
    for k in range(1, len(kinds) + 1):
        if k == len(kinds) or family(kinds[k]) != family(kinds[start]):
            runs.append((start, k - start, family(kinds[start])))
            start = k
    return runs


def _draw_rotations(kinds, b, n_split, max_angle, generator, like: Tensor) -> Tensor:
    """``(V·B, 3, 3)``: the rotation of each (view, cloud) (identity for points views).
    All Haar rotations of the step (B per ``rotation`` view, n_split per ``chunk`` view)
    come from one draw; one cached index spreads them over the (view, cloud) pairs."""
    device, dtype = like.device, like.dtype
    n_haar, n_small = _table_sizes(kinds, b, n_split)
    table = [random_rotations(n_haar, generator=generator, device=device, dtype=dtype)]
    if n_small:
        table.append(small_rotations(n_small, max_angle, generator=generator, device=device, dtype=dtype))
    if any(kind in POINT_KINDS for kind in kinds):
        table.append(torch.eye(3, device=device, dtype=dtype)[None])
    table = table[0] if len(table) == 1 else torch.cat(table)
    return table[_rotation_index(tuple(kinds), b, n_split, device)]


def _table_sizes(kinds, b: int, n_split: int) -> tuple[int, int]:
    """Rows of Haar rotations (B per ``rotation`` view, n_split per ``chunk`` view) and of
    small rotations (B per ``small-rotation`` view) a step draws."""
    return b * kinds.count("rotation") + n_split * kinds.count("chunk"), b * kinds.count("small-rotation")


def _rotation_index(kinds: tuple, b: int, n_split: int, device) -> Tensor:
    """Row of the rotation table (Haar draws, then small rotations, then the identity)
    for each (view, cloud); built once per layout and device."""

    def build(dev) -> Tensor:
        n_haar, n_small = _table_sizes(kinds, b, n_split)
        identity, haar, small, rows = n_haar + n_small, 0, n_haar, []
        per_chunk = b // n_split if "chunk" in kinds else 1
        for kind in kinds:
            if kind == "rotation":
                rows += range(haar, haar + b)
                haar += b
            elif kind == "chunk":
                rows += [haar + j // per_chunk for j in range(b)]
                haar += n_split
            elif kind == "small-rotation":
                rows += range(small, small + b)
                small += b
            else:
                rows += [identity] * b
        return torch.tensor(rows, dtype=torch.long, device=dev)

    return cached_tensor(("rotation_index", kinds, b, n_split), device, build)


def _copies(batch: Tensor, b: int, count: int) -> Tensor:
    """The batch vector of ``count`` view-major copies of a batch of ``b`` clouds."""
    if count == 1:
        return batch
    offsets = torch.arange(0, count * b, b, device=batch.device)
    return (batch[None, :] + offsets[:, None]).reshape(-1)


def _rotated_views(centred, x, batch, b, rotations):
    """``count`` copies of the centred clouds, copy k cloud j rotated by
    ``rotations[k·B + j]``: one gather of the per-point matrices and one product."""
    count = rotations.shape[0] // b
    copies = _copies(batch, b, count)
    pos = centred.repeat(count, 1) if count > 1 else centred
    rotated = rotate_points(rotations[copies], pos)
    return rotated, (x.repeat(count) if x is not None and count > 1 else x), copies


def _points_views(pos, x, batch, b, count, length_scale, jitter, keep_fraction, generator):
    """``count`` point-augmented copies: an independent random subset and jitter per
    copy and cloud, then centred and scaled (the subset moves the centroid)."""
    copies = _copies(batch, b, count)
    mask = random_subsets(copies, count * b, keep_fraction, generator)
    pos_all = (pos.repeat(count, 1) if count > 1 else pos)[mask]
    copies = copies[mask]
    if jitter > 0:
        pos_all = pos_all + jitter * torch.randn(pos_all.shape, generator=generator, device=pos.device, dtype=pos.dtype)
    x_all = (x.repeat(count) if count > 1 else x)[mask] if x is not None else None
    return center_and_scale(pos_all, copies, count * b, length_scale), x_all, copies


def split_steps(stacked: StackedViews, steps: int) -> list[StackedViews]:
    """The views of ``steps`` steps made as one batch of ``steps``·B clouds per view
    (cloud k·W·B + s·B + j: view k, step s, cloud j) → one :class:`StackedViews` per
    step (cloud k·B + j), each a slice of one reordered copy. One stable sort of the
    points by (step, view, cloud) and one device-to-host copy of the steps' sizes."""
    if steps == 1:
        return [stacked]
    v = stacked.num_views
    if stacked.num_graphs % (v * steps):
        raise ValueError(f"{stacked.num_graphs} clouds do not split into {steps} steps of {v} views")
    b = stacked.num_graphs // (v * steps)
    view, rest = stacked.batch.div(steps * b, rounding_mode="floor"), stacked.batch.remainder(steps * b)
    step = rest.div(b, rounding_mode="floor")
    key = step * (v * b) + view * b + rest.remainder(b)  # (step, view, cloud), the new order
    key, order = torch.sort(key, stable=True)
    pos, x = stacked.pos[order], (stacked.x[order] if stacked.x is not None else None)
    local = key.remainder(v * b)
    bounds = [0] + torch.bincount(step, minlength=steps).cumsum(0).tolist()
    return [
        StackedViews(pos[lo:hi], None if x is None else x[lo:hi], local[lo:hi], v * b, v)
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]


def default_view_window(device: torch.device, points_per_step: float, *, cap: int = 16,
                        points_budget: int = 1 << 22, large_step: int = 1 << 20) -> int:
    """Steps whose views are made together: 1 on a CPU (no launch cost to spread); on a
    GPU as many as keep a window under ``points_budget`` points (≈ 4 M: a few hundred MB
    of transient tensors), at most ``cap``, and 1 for steps of ``large_step`` points or
    more, whose views are bound by device work, not launches (H200, 1,024 clouds × 4
    views × 300 points: 1.57 ms per step with W = 3 against 1.23 ms with W = 1; with 64
    clouds W = 16 took 0.18 ms against 1.26 ms)."""
    if torch.device(device).type != "cuda" or points_per_step >= large_step:
        return 1
    return int(max(1, min(cap, points_budget // max(1, int(points_per_step)))))

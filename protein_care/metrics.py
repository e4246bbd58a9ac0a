"""Equivariance metrics of an embedding (torch only, batched, device-agnostic).

- :func:`relative_equivariance`: the paper's γ_f (CARE eq. (2)).
- :func:`geodesic_angle`: the angle of R1ᵀR2 on SO(d).
- :func:`composition_error`: the Cor. 1 check ρ(b∘a) = ρ(b)ρ(a).
- :func:`axis_angle`: sign-invariant angle between directions (PC1 targets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RelativeEquivariance:
    """γ_f over a batch: ``value`` (mean over the pairs used), ``n_pairs`` used and
    ``n_skipped`` pairs whose denominator was below ``eps`` (both views of both samples
    unmoved: the ratio is undefined there)."""

    value: float
    n_pairs: int
    n_skipped: int

    def __float__(self) -> float:
        return self.value


def relative_equivariance(f_x: Tensor, f_xa: Tensor, *, eps: float = 1e-12) -> RelativeEquivariance:
    r"""Relative rotational equivariance γ_f (CARE, eq. (2)) for one augmentation a.

    Row i of ``f_xa`` is f(a(x_i)) for a single a shared by the batch. Over all pairs
    i ≠ j:

    .. math::
        \gamma_f = \mathbb{E}_{i \ne j}
        \frac{\big(\lVert f(a x_j) - f(a x_i)\rVert^2 - \lVert f(x_j) - f(x_i)\rVert^2\big)^2}
             {\big(\lVert f(a x_j) - f(x_j)\rVert^2 + \lVert f(a x_i) - f(x_i)\rVert^2\big)^2}

    0 when a acts as an orthogonal map that moves the embeddings (non-trivially
    equivariant); large when distances change while points barely move. Computed in
    float64.
    """
    if f_x.shape != f_xa.shape or f_x.ndim != 2:
        raise ValueError(f"f_x and f_xa must both be [n, d], got {tuple(f_x.shape)} and {tuple(f_xa.shape)}")
    n = f_x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 rows, got {n}")
    x, xa = f_x.double(), f_xa.double()
    dist_x = torch.cdist(x, x).pow(2)  # ||f(x_j) - f(x_i)||²
    dist_xa = torch.cdist(xa, xa).pow(2)  # ||f(a x_j) - f(a x_i)||²
    moved = (xa - x).pow(2).sum(dim=1)  # ||f(a x_i) - f(x_i)||²
    numerator = (dist_xa - dist_x).pow(2)
    denominator = (moved[:, None] + moved[None, :]).pow(2)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=x.device)
    valid = off_diagonal & (denominator >= eps)
    n_pairs = int(valid.sum())
    n_skipped = int(off_diagonal.sum()) - n_pairs
    value = float((numerator[valid] / denominator[valid]).mean()) if n_pairs else float("nan")
    return RelativeEquivariance(value, n_pairs, n_skipped)


def geodesic_angle(R1: Tensor, R2: Tensor) -> Tensor:
    """Geodesic distance on SO(d) between ``R1`` and ``R2``: the rotation angle of
    R1ᵀR2 in radians, batched over leading dimensions.

    For d = 3 this is θ with tr = 1 + 2 cos θ, computed as atan2(sin θ, cos θ) from the
    skew part and the trace (as accurate as a clamped acos away from 0 and π, and also
    near them); for d = 2 atan2 of the matrix entries; for other d, √(Σ θ_k²) over the
    planes of rotation (the norm of the matrix logarithm divided by √2).
    """
    if R1.shape[-2:] != R2.shape[-2:] or R1.shape[-1] != R1.shape[-2]:
        raise ValueError(f"R1 and R2 must be square matrices of one size, got {tuple(R1.shape)} and {tuple(R2.shape)}")
    relative = R1.transpose(-1, -2) @ R2
    d = relative.shape[-1]
    if d == 3:
        skew = torch.stack(
            [
                relative[..., 2, 1] - relative[..., 1, 2],
                relative[..., 0, 2] - relative[..., 2, 0],
                relative[..., 1, 0] - relative[..., 0, 1],
            ],
            dim=-1,
        )
        sin = skew.norm(dim=-1) / 2
        cos = ((torch.diagonal(relative, dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
        return torch.atan2(sin, cos)
    if d == 2:
        return torch.atan2(relative[..., 1, 0], relative[..., 0, 0]).abs()
    angles = torch.angle(torch.linalg.eigvals(relative.double()))  # ±θ_k pairs, 0s
    return (angles.pow(2).sum(-1) / 2).sqrt().to(R1.dtype)


def composition_error(R_a: Tensor, R_b: Tensor, R_ab: Tensor) -> Tensor:
    r"""How far the representation of b∘a is from the product of those of b and a
    (CARE, Cor. 1: ρ(b∘a) = ρ(b)ρ(a)): :math:`\lVert R_{ab} - R_b R_a \rVert_{Fro} /
    \sqrt{d}`. Batched."""
    d = R_a.shape[-1]
    return torch.linalg.matrix_norm(R_ab - R_b @ R_a, ord="fro") / math.sqrt(d)


def axis_angle(u: Tensor, v: Tensor, *, degrees: bool = True) -> Tensor:
    """Sign-invariant angle between directions ``u`` and ``v`` (``(..., k)``):
    arccos(|û·v̂|), in [0, 90°]. Used for the PC1 probe, whose target axis is defined
    only up to sign. A random direction in 3-D is at 57.3° from a fixed axis on average
    (mean of arccos|cos θ| = 1 radian)."""
    uu = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    vv = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (uu * vv).sum(-1).abs().clamp(0.0, 1.0)
    angle = torch.acos(cos)
    return torch.rad2deg(angle) if degrees else angle

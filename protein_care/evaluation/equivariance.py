"""How rotations act on a set of embeddings: Wahba's error (CARE §4, Fig. 2c), the
relative equivariance γ_f (CARE eq. (2)) and the composition check of Cor. 1.

All functions take embeddings of one set of clouds (rows, ``(n, d)``) and of the same
clouds under rotations shared by the whole set, and return plain floats per rotation.

A rotation-invariant encoder gets W_f ≈ 0 for free (R = I fits), so next to W_f we
report how far the embeddings moved, ‖F_a − F‖_Fro/√n, and the ratio
W_f / ‖F_a − F‖_Fro: 0 when the rotation acts as an exact orthogonal map, about 1 when
no rotation explains the movement better than the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from protein_care.geometry import solve_wahba, wahba_error
from protein_care.metrics import composition_error, relative_equivariance

#: Displacements ‖F_a − F‖_Fro/√n below this are "did not move": the relative Wahba
#: error and γ_f are undefined there (0/0) and are skipped.
STILL_TOLERANCE: float = 1e-6


@dataclass(frozen=True)
class WahbaResult:
    """Per rotation a (arrays of length K)."""

    error: np.ndarray  # W_f / √n
    displacement: np.ndarray  # ‖F_a − F‖_Fro / √n
    relative: np.ndarray  # W_f / ‖F_a − F‖_Fro, NaN where the embeddings did not move
    gamma: np.ndarray  # γ_f, NaN where undefined

    def summary(self) -> dict[str, float | None]:
        return {
            "wahba_error_mean": float(self.error.mean()),
            "wahba_error_max": float(self.error.max()),
            "wahba_relative_mean": nanmean_or_none(self.relative),
            "embedding_displacement_mean": float(self.displacement.mean()),
            "gamma_f_mean": nanmean_or_none(self.gamma),
        }


def nanmean_or_none(values) -> float | None:
    """Mean over finite entries, ``None`` when there are none (JSON has no NaN)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def wahba_metrics(F: Tensor, F_rotated: Tensor | list[Tensor]) -> WahbaResult:
    """Wahba's error, displacement, relative error and γ_f for each rotation.

    Args:
        F: ``(n, d)`` embeddings f(x_i).
        F_rotated: ``(K, n, d)`` (or a list of K ``(n, d)``): row i of entry k is
            f(a_k(x_i)), one rotation a_k shared by the set.
    """
    Fa = torch.stack(list(F_rotated)) if isinstance(F_rotated, (list, tuple)) else F_rotated
    if Fa.ndim != 3 or Fa.shape[1:] != F.shape:
        raise ValueError(f"F_rotated must be (K, n, d) with (n, d) = {tuple(F.shape)}, got {tuple(Fa.shape)}")
    n = F.shape[0]
    F64, Fa64 = F.double(), Fa.double()
    base = F64.expand_as(Fa64)
    raw = wahba_error(base, Fa64).double().cpu().numpy()  # (K,)
    moved = torch.linalg.matrix_norm(Fa64 - base, ord="fro").cpu().numpy()
    displacement = moved / math.sqrt(n)
    still = displacement < STILL_TOLERANCE
    relative = np.where(still, np.nan, raw / np.where(still, 1.0, moved))
    gamma = np.array([relative_equivariance(F64, fa).value if not s else np.nan for fa, s in zip(Fa64, still)])
    return WahbaResult(raw / math.sqrt(n), displacement, relative, gamma)


def composition_errors(F: Tensor, F_a: Tensor, F_b: Tensor, F_ba: Tensor) -> np.ndarray:
    """Cor. 1 check ρ(b∘a) = ρ(b)ρ(a), with each ρ recovered by :func:`solve_wahba`
    from the set's embeddings: ``‖R_ba − R_b R_a‖_Fro / √d`` per triple.

    The set determines each R only when its embeddings span the space (rank d, so
    n ≥ d clouds): otherwise R is arbitrary outside their span and the difference
    measures that, not the encoder (an exactly equivariant embedding of 121 clouds in
    128 dimensions scores ~0.5). Then every entry is NaN (reported as None). The rank
    is the numerical rank at the precision the embeddings were computed in (singular
    values above max(n, d) · ε of F's dtype times the largest): float32 rounding alone
    would make any float32 set look full-rank in float64.

    Args:
        F: ``(n, d)``; F_a, F_b, F_ba: ``(K, n, d)``, embeddings under a_k, b_k and
            b_k∘a_k (a applied first: coordinates rotated by R_b R_a).
    """
    eps = torch.finfo(F.dtype if F.dtype.is_floating_point else torch.float64).eps
    if int(torch.linalg.matrix_rank(F.double(), rtol=max(F.shape) * eps)) < F.shape[1]:
        return np.full(F_a.shape[0], np.nan)
    base = F.double().expand_as(F_a)
    r_a = solve_wahba(base, F_a.double())
    r_b = solve_wahba(base, F_b.double())
    r_ba = solve_wahba(base, F_ba.double())
    return composition_error(r_a, r_b, r_ba).cpu().numpy()

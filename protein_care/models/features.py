"""Per-point input features of the set encoders: coordinates, their quadratic
monomials, and an optional residue-type embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from protein_care.options import POINT_FEATURES

# (i, j) index pairs of the upper triangle of p pᵀ: xx, yy, zz, xy, xz, yz.
_QUADRATIC_I = (0, 1, 2, 0, 0, 1)
_QUADRATIC_J = (0, 1, 2, 1, 2, 2)


def quadratic_monomials(pos: Tensor) -> Tensor:
    """The six distinct entries of ``p pᵀ`` for each point: ``(N, 3) -> (N, 6)``.

    Why: the first principal axis of a centred cloud is the top eigenvector of its
    second-moment matrix ``Σ_i p_i p_iᵀ``. Mean-pooling these monomials gives that
    matrix exactly (divided by n), so the PC1 target is a function of a *linear*
    statistic of the pooled features instead of something φ must learn to square.
    """
    i = torch.tensor(_QUADRATIC_I, device=pos.device)
    j = torch.tensor(_QUADRATIC_J, device=pos.device)
    return pos[:, i] * pos[:, j]


class PointFeatures(nn.Module):
    """Builds each point's input vector to φ.

    ``xyz``: the centred, globally scaled coordinates (3); ``xyz+quadratic``: those
    plus :func:`quadratic_monomials` (9 in all). With ``num_residue_types > 0`` an
    embedding of the residue-type code (``embedding_dim`` values) is appended.

    Args:
        point_features: one of :data:`POINT_FEATURES`.
        num_residue_types: size of the residue vocabulary; 0 disables residue features.
        embedding_dim: width of the residue-type embedding.
    """

    def __init__(self, point_features: str = "xyz+quadratic", num_residue_types: int = 0, embedding_dim: int = 16):
        super().__init__()
        if point_features not in POINT_FEATURES:
            raise ValueError(f"point_features must be one of {POINT_FEATURES}, got {point_features!r}")
        self.point_features = point_features
        self.residue_embedding = nn.Embedding(num_residue_types, embedding_dim) if num_residue_types > 0 else None
        self.out_channels = (3 if point_features == "xyz" else 9) + (embedding_dim if self.residue_embedding else 0)

    @property
    def uses_residue_features(self) -> bool:
        return self.residue_embedding is not None

    def forward(self, pos: Tensor, x: Tensor | None = None) -> Tensor:
        parts = [pos]  # (N, 3)
        if self.point_features == "xyz+quadratic":
            parts.append(quadratic_monomials(pos))  # (N, 6)
        if self.residue_embedding is not None:
            if x is None:
                raise ValueError("this encoder uses residue-type features: pass x (LongTensor [N])")
            codes = x.long().clamp(0, self.residue_embedding.num_embeddings - 1)
            parts.append(self.residue_embedding(codes).to(pos.dtype))  # (N, embedding_dim)
        return torch.cat(parts, dim=1)

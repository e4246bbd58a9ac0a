"""Stand-in encoders with known symmetry, for the evaluation and trajectory tests.

Each is an ``embed(coords, features, *, rotations=None) -> Tensor[B, d]`` callable
(the shape :func:`protein_care.evaluation.evaluate_embedder` takes), computed in
float64 on clouds centred on their centroid and rotated by ``rotations`` (one per
cloud). Encoder-module versions (``(pos, x, batch, num_graphs) -> (B, d)``) wrap the
same maps for code that calls the real ``embed_clouds``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

S2, S6 = math.sqrt(2.0), math.sqrt(6.0)


def random_clouds(n_clouds: int, seed: int = 0, *, min_points: int = 30, max_points: int = 80) -> list[np.ndarray]:
    """Anisotropic Gaussian clouds in random orientations (float32 ``(n, 3)``)."""
    rng = np.random.default_rng(seed)
    clouds = []
    for _ in range(n_clouds):
        n = int(rng.integers(min_points, max_points + 1))
        scales = np.sort(rng.uniform(0.5, 3.0, size=3))[::-1]
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        x = rng.normal(size=(n, 3)) * scales @ q.T + rng.normal(scale=5.0, size=3)
        clouds.append(x.astype(np.float32))
    return clouds


def _moments(coords, rotations) -> tuple[torch.Tensor, torch.Tensor]:
    """Second moments ``(B, 3, 3)`` of the centred, rotated clouds (R M Rᵀ, which equals
    the moment of the rotated points) and radius statistics ``(B, 4)`` (invariant)."""
    ms, stats = [], []
    for c in coords:
        x = np.asarray(c, dtype=np.float64)
        x = x - x.mean(axis=0)
        ms.append(x.T @ x / len(x))
        r = np.linalg.norm(x, axis=1)
        stats.append([r.mean(), np.cbrt((r**3).mean()), r.max(), len(x) / 50.0])
    m = torch.as_tensor(np.stack(ms))
    if rotations is not None:
        r = torch.as_tensor(rotations).double()
        m = r @ m @ r.transpose(1, 2)
    return m, torch.as_tensor(np.array(stats))


def traceless_coordinates(m: torch.Tensor) -> torch.Tensor:
    """The 5 orthonormal-basis coordinates of the traceless part of ``m`` ``(..., 3, 3)``."""
    return torch.stack(
        [
            (m[..., 0, 0] - m[..., 1, 1]) / S2,
            (m[..., 0, 0] + m[..., 1, 1] - 2 * m[..., 2, 2]) / S6,
            S2 * m[..., 0, 1],
            S2 * m[..., 0, 2],
            S2 * m[..., 1, 2],
        ],
        dim=-1,
    )


def _invariants(m: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.linalg.eigvalsh(m), stats], dim=1)


def equivariant_embed(coords, features=None, *, rotations=None) -> torch.Tensor:
    """Exactly equivariant, d = 5: rotation R acts as an orthogonal 5×5 map (the
    traceless symmetric representation of SO(3))."""
    m, _ = _moments(coords, rotations)
    return torch.nn.functional.normalize(traceless_coordinates(m), dim=1)


def equivariant_plus_invariant_embed(coords, features=None, *, rotations=None, scale: float = 1.0) -> torch.Tensor:
    """Invariant features (unit weight) next to ``scale`` × the normalised traceless
    moment: exactly equivariant (block-diagonal orthogonal action)."""
    m, stats = _moments(coords, rotations)
    t = torch.nn.functional.normalize(traceless_coordinates(m), dim=1)
    return torch.cat([_invariants(m, stats), scale * t], dim=1)


def invariant_embed(coords, features=None, *, rotations=None) -> torch.Tensor:
    """Rotation invariant and injective on generic clouds."""
    m, stats = _moments(coords, rotations)
    return torch.nn.functional.normalize(_invariants(m, stats), dim=1)


def constant_embed(coords, features=None, *, rotations=None) -> torch.Tensor:
    return torch.ones(len(coords), 4, dtype=torch.float64) / 2


_W = torch.Generator().manual_seed(7)
_NOISE_W = torch.randn(3, 16, generator=_W, dtype=torch.float64)
_NOISE_B = torch.randn(16, generator=_W, dtype=torch.float64)


def nonequivariant_embed(coords, features=None, *, rotations=None) -> torch.Tensor:
    """Invariant part plus a small non-equivariant part (a random ReLU feature pooled
    over points), like an untrained DeepSet: rotations move the embeddings, but not
    as one orthogonal map."""
    m, stats = _moments(coords, rotations)
    pooled = []
    for k, c in enumerate(coords):
        x = torch.as_tensor(np.asarray(c), dtype=torch.float64)
        x = x - x.mean(dim=0)
        if rotations is not None:
            x = x @ torch.as_tensor(rotations[k]).double().T
        pooled.append(torch.relu(x @ _NOISE_W + _NOISE_B).mean(dim=0))
    return torch.nn.functional.normalize(torch.cat([_invariants(m, stats), 0.3 * torch.stack(pooled)], dim=1), dim=1)


class MomentEncoder(nn.Module):
    """Encoder-contract version of :func:`equivariant_embed` (or of the invariant
    eigenvalues with ``invariant=True``): ``(pos, x, batch, num_graphs) -> (B, d)``."""

    def __init__(self, invariant: bool = False):
        super().__init__()
        self.invariant = invariant
        self.dim = 3 if invariant else 5

    def forward(self, pos, x, batch, num_graphs):
        rows = []
        for g in range(num_graphs):
            p = pos[batch == g].double()
            p = p - p.mean(dim=0)
            if self.invariant:
                rows.append(torch.linalg.eigvalsh(p.T @ p / len(p)))
            else:
                rows.append(traceless_coordinates(p.T @ p / len(p)))
        return torch.nn.functional.normalize(torch.stack(rows), dim=1).to(pos.dtype)

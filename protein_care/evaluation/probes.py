"""The PC1 probe (CARE §5.1, Fig. 2b): predict a cloud's first principal axis from its
frozen embedding.

The target u is a direction defined only up to sign, so the probes regress the
sign-free matrix u uᵀ instead, written in an orthonormal basis of the traceless
symmetric 3×3 matrices (5 numbers; the trace of u uᵀ is always 1 and carries nothing).
The predicted axis is the top eigenvector of the predicted matrix, so flipping the
sign of any target leaves the probe unchanged by construction.

- :func:`principal_axes`: PC1 and the eigenvalues of a centred cloud's covariance.
- :func:`axis_to_target`, :func:`target_to_axis`: u ↦ coordinates of u uᵀ − I/3, and back.
- :func:`fit_ridge_probe`: closed-form ridge (float64, one SVD for the whole λ grid),
  λ chosen by the mean validation angle.
- :func:`fit_mlp_probe`: a small MLP on the same target, early-stopped on validation.

Angles are ``arccos |û·v|`` in degrees (:func:`protein_care.metrics.axis_angle`); a
random direction scores 57.3° on average (:data:`PC1_CHANCE_DEG`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from protein_care.metrics import axis_angle

#: Mean of arccos|cos θ| for a uniformly random direction in 3-D: 1 radian.
PC1_CHANCE_DEG: float = math.degrees(1.0)

#: Ridge penalties tried, 1e-12 … 1e4. A floor at 1e-6 overstated the angle by up to
#: 14° in a prototype: equivariant signal can live in low-variance directions.
RIDGE_LAMBDAS: tuple[float, ...] = tuple(10.0**k for k in range(-12, 5))

#: Top two covariance eigenvalues at least this far apart (λ2 ≤ (1 − gap) λ1) make PC1
#: "well defined".
WELL_DEFINED_GAP: float = 0.2

_S2, _S6 = math.sqrt(2.0), math.sqrt(6.0)
# Orthonormal basis (Frobenius) of the traceless symmetric 3×3 matrices, shape (5, 3, 3).
_BASIS = np.array(
    [
        [[1 / _S2, 0, 0], [0, -1 / _S2, 0], [0, 0, 0]],
        [[1 / _S6, 0, 0], [0, 1 / _S6, 0], [0, 0, -2 / _S6]],
        [[0, 1 / _S2, 0], [1 / _S2, 0, 0], [0, 0, 0]],
        [[0, 0, 1 / _S2], [0, 0, 0], [1 / _S2, 0, 0]],
        [[0, 0, 0], [0, 0, 1 / _S2], [0, 1 / _S2, 0]],
    ],
    dtype=np.float64,
)


# ----------------------------------------------------------------------------- targets


def principal_axes(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First principal axis ``(3,)`` and descending covariance eigenvalues ``(3,)`` of
    one cloud ``(n, 3)`` (centred inside, float64). The axis's sign is arbitrary. A
    one-point cloud (``build-dataset --min-points 1`` keeps them) has eigenvalues 0 and
    an arbitrary axis: :func:`well_defined` leaves it out."""
    x = np.asarray(coords, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) < 1:
        raise ValueError(f"coords must be (n >= 1, 3), got {x.shape}")
    x = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(x.T @ x / len(x))  # ascending
    return vectors[:, -1], values[::-1].copy()


def well_defined(eigenvalues: np.ndarray, gap: float = WELL_DEFINED_GAP) -> np.ndarray:
    """Whether PC1 is well defined: λ1 > 0 (the cloud is not a single point; λ in Å²)
    and λ2 ≤ (1 − gap)·λ1, for eigenvalues ``(..., 3)`` sorted descending."""
    ev = np.asarray(eigenvalues)
    return (ev[..., 0] > 1e-8) & (ev[..., 1] <= (1.0 - gap) * ev[..., 0])


def rotate_axes(axes: np.ndarray, rotations: torch.Tensor | np.ndarray) -> np.ndarray:
    """PC1 of rotated clouds: ``R u`` for axes ``(N, 3)`` and rotations ``(N, 3, 3)``."""
    r = np.asarray(rotations.detach().cpu() if isinstance(rotations, torch.Tensor) else rotations, dtype=np.float64)
    return np.einsum("nij,nj->ni", r, np.asarray(axes, dtype=np.float64))


def axis_to_target(u: np.ndarray) -> np.ndarray:
    """Directions ``(N, 3)`` → the 5 coordinates of u uᵀ − I/3 (u normalised); sign-free."""
    u = np.asarray(u, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=-1, keepdims=True).clip(1e-300)
    outer = u[:, :, None] * u[:, None, :]
    return np.einsum("nij,kij->nk", outer, _BASIS)


def target_to_axis(y: np.ndarray) -> np.ndarray:
    """Predicted coordinates ``(N, 5)`` → unit axes ``(N, 3)``: the eigenvector of the
    largest eigenvalue of the symmetric matrix Σ y_k B_k."""
    y = np.asarray(y, dtype=np.float64)
    matrices = np.einsum("nk,kij->nij", y, _BASIS)
    _, vectors = np.linalg.eigh(matrices)
    return vectors[:, :, -1]


def angles_deg(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Sign-invariant angles arccos|û·v| in degrees, ``(N,)``."""
    return axis_angle(torch.as_tensor(predicted, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)).numpy()


# ------------------------------------------------------------------------------- ridge


@dataclass
class RidgeProbe:
    """A fitted linear probe: ``y = (e − x_mean) W + y_mean``, then :func:`target_to_axis`."""

    weights: np.ndarray  # (d, 5)
    x_mean: np.ndarray  # (d,)
    y_mean: np.ndarray  # (5,)
    lam: float
    lambdas: tuple[float, ...] = ()
    val_angle_deg: tuple[float, ...] = ()  # mean validation angle per λ in `lambdas`

    def predict_axes(self, embeddings) -> np.ndarray:
        e = _as_f64(embeddings)
        return target_to_axis((e - self.x_mean) @ self.weights + self.y_mean)


def _as_f64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def fit_ridge_probe(
    e_train,
    u_train,
    e_val,
    u_val,
    *,
    lambdas: tuple[float, ...] = RIDGE_LAMBDAS,
) -> RidgeProbe:
    r"""Ridge regression of the sign-free PC1 target on embeddings, λ chosen on validation.

    With centred X = U S Vᵀ (thin SVD, float64), :math:`W(\lambda) = V\,\mathrm{diag}(s /
    (s^2 + \lambda))\,U^\top Y`, so every λ in the grid costs one small matrix product.
    λ minimises the mean validation angle; ties go to the larger λ.

    Args:
        e_train, e_val: embeddings ``(N, d)``.
        u_train, u_val: PC1 directions ``(N, 3)`` (any sign).
        lambdas: the penalty grid (default :data:`RIDGE_LAMBDAS`, 1e-12 … 1e4).
    """
    if not lambdas:
        raise ValueError("lambdas must be a non-empty grid")
    x, xv = _as_f64(e_train), _as_f64(e_val)
    y = axis_to_target(u_train)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)  # (r, 5)
    val_proj = (xv - x_mean) @ vt.T  # (n_val, r)
    scores = []
    for lam in lambdas:
        shrink = s / (s * s + lam)
        pred = (val_proj * shrink) @ uty + y_mean
        scores.append(float(angles_deg(target_to_axis(pred), u_val).mean()))
    scores_arr = np.array(scores)
    best = np.flatnonzero(scores_arr <= scores_arr.min() + 1e-9)
    pick = max(best, key=lambda i: lambdas[i])
    lam = lambdas[pick]
    weights = vt.T @ ((s / (s * s + lam))[:, None] * uty)
    return RidgeProbe(weights, x_mean, y_mean, float(lam), tuple(float(v) for v in lambdas), tuple(scores))


# --------------------------------------------------------------------------------- MLP


@contextlib.contextmanager
def _one_thread():
    """Run a tiny model on one CPU thread: with several threads on a shared machine,
    matrix products of this size spend their time waiting for each other (a 30-epoch
    fit went from 0.5 s to 12–36 s with 2 threads on 2 busy cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class MLPProbe:
    """A fitted MLP probe on standardised embeddings (``net`` in eval mode, float32)."""

    net: nn.Module
    x_mean: np.ndarray
    x_scale: np.ndarray
    epochs: int  # epochs trained including patience
    best_epoch: int
    val_angle_deg: float
    history: list[float] = field(default_factory=list)

    def predict_axes(self, embeddings) -> np.ndarray:
        e = (_as_f64(embeddings) - self.x_mean) / self.x_scale
        with torch.no_grad():
            y = self.net(torch.as_tensor(e, dtype=torch.float32)).double().numpy()
        return target_to_axis(y)


def fit_mlp_probe(
    e_train,
    u_train,
    e_val,
    u_val,
    *,
    hidden: int = 128,
    lr: float = 2e-3,
    batch_size: int = 256,
    max_epochs: int = 150,
    patience: int = 15,
    seed: int = 0,
    ridge: RidgeProbe | None = None,
) -> MLPProbe:
    """A small MLP (d → hidden → hidden → 5, ReLU) beside a linear path, regressing the
    sign-free PC1 target with Adam and MSE, early-stopped on the mean validation angle
    (the best epoch's weights are kept; epoch 0 is the ridge probe on the standardised
    embeddings, so the MLP probe is never worse than linear on validation: a plain MLP on
    a few hundred embeddings memorises the training proteins and stayed at chance where
    ridge found the axis to 10°). ``ridge``: the linear probe already fitted on these
    embeddings (fitted here when not given). Deterministic given ``seed``; touches no
    global RNG state. Runs on the CPU in one thread."""
    if ridge is None:
        ridge = fit_ridge_probe(e_train, u_train, e_val, u_val)
    with _one_thread():
        return _fit_mlp_probe(e_train, u_train, e_val, u_val, ridge, hidden, lr, batch_size, max_epochs, patience,
                              seed)


class _ResidualMLP(nn.Module):
    """``y = A x + b + MLP(x)``: a linear path started at the ridge solution and a ReLU
    MLP whose last layer starts at zero, so training starts from the linear probe and
    the MLP probe is never worse than it on validation (early stopping keeps epoch 0)."""

    def __init__(self, linear: nn.Linear, hidden: int):
        super().__init__()
        d = linear.in_features
        self.linear = linear
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 5))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.mlp(x)


def _fit_mlp_probe(e_train, u_train, e_val, u_val, ridge, hidden, lr, batch_size, max_epochs, patience,
                   seed) -> MLPProbe:
    x = _as_f64(e_train)
    x_mean = x.mean(axis=0)
    x_scale = x.std(axis=0)
    x_scale = np.where(x_scale > 1e-12 * max(1.0, float(x_scale.max(initial=0.0))), x_scale, 1.0)
    xt = torch.as_tensor((x - x_mean) / x_scale, dtype=torch.float32)
    yt = torch.as_tensor(axis_to_target(u_train), dtype=torch.float32)
    xv = torch.as_tensor((_as_f64(e_val) - x_mean) / x_scale, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = nn.Linear(xt.shape[1], 5)
        with torch.no_grad():
            # the ridge map y = (e − m) W + y₀ on standardised inputs x = (e − x_mean) / x_scale
            weights = x_scale[:, None] * ridge.weights
            linear.weight.copy_(torch.as_tensor(weights.T, dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(ridge.y_mean + (x_mean - ridge.x_mean) @ ridge.weights,
                                              dtype=torch.float32))
        net = _ResidualMLP(linear, hidden)
    net.eval()
    with torch.no_grad():
        start_angle = float(angles_deg(target_to_axis(net(xv).double().numpy()), u_val).mean())
    best_angle, best_epoch = start_angle, 0
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    history: list[float] = [start_angle]
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        net.train()
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            loss = (net(xt[idx]) - yt[idx]).pow(2).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            pred = net(xv).double().numpy()
        angle = float(angles_deg(target_to_axis(pred), u_val).mean())
        history.append(angle)
        if angle < best_angle - 1e-6:
            best_angle, best_epoch = angle, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return MLPProbe(net, x_mean, x_scale, epoch, best_epoch, best_angle, history)

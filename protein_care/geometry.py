"""Rotations and Wahba's problem, batched and device-agnostic (torch only).

- :func:`random_rotations`: Haar-uniform samples of SO(3) from unit quaternions.
- :func:`axis_rotation`: rotations by given angles about a fixed axis, and
  :func:`axis_angle_matrices`: about one axis each (Rodrigues).
- :func:`random_orthogonal`: Haar samples of SO(d) or O(d) (QR with sign correction).
- :func:`solve_wahba`, :func:`wahba_error`: the best rotation between two sets of
  embeddings and the paper's W_f (CARE §4).

Convention: matrices act on column vectors, ``x' = R x``; a batch of points stored as
rows transforms as ``X' = X Rᵀ``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from protein_care.device_constants import cached_tensor

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def _quaternion_product_map() -> list[list[float]]:
    """``C`` (16, 9) with ``vec(R) = vec(q qᵀ) C`` for a unit quaternion q = (w, x, y, z):
    every entry of R is a quadratic form in q (the diagonal uses w² + x² + y² + z² = 1)."""
    w, x, y, z = range(4)
    entries = {  # R[i][j] as {(a, b): coefficient of q_a q_b}
        (0, 0): {(w, w): 1, (x, x): 1, (y, y): -1, (z, z): -1},
        (0, 1): {(x, y): 2, (w, z): -2}, (0, 2): {(x, z): 2, (w, y): 2},
        (1, 0): {(x, y): 2, (w, z): 2}, (1, 1): {(w, w): 1, (x, x): -1, (y, y): 1, (z, z): -1},
        (1, 2): {(y, z): 2, (w, x): -2}, (2, 0): {(x, z): 2, (w, y): -2}, (2, 1): {(y, z): 2, (w, x): 2},
        (2, 2): {(w, w): 1, (x, x): -1, (y, y): -1, (z, z): 1},
    }
    table = [[0.0] * 9 for _ in range(16)]
    for (i, j), terms in entries.items():
        for (a, b), c in terms.items():
            table[4 * a + b][3 * i + j] = float(c)
    return table


def _quaternion_to_matrix(q: Tensor) -> Tensor:
    """Quaternions ``(n, 4)`` as (w, x, y, z) → rotation matrices ``(n, 3, 3)``.

    ``R = vec⁻¹(vec(q qᵀ) C) / ‖q‖²``: homogeneous, so q need not be normalised, and a
    handful of tensor ops whatever n (on a GPU the op count, not the arithmetic, is
    what a small batch of rotations costs)."""
    product_map = cached_tensor(("quaternion_product_map", q.dtype), q.device,
                                lambda device: torch.tensor(_quaternion_product_map(), device=device, dtype=q.dtype))
    outer = (q[:, :, None] * q[:, None, :]).reshape(-1, 16)
    return (outer @ product_map).div_(outer[:, ::5].sum(1, keepdim=True)).reshape(-1, 3, 3)


def random_rotations(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``n`` Haar-uniform rotations of SO(3), shape ``(n, 3, 3)``.

    A 4-D standard Gaussian normalised to unit length is uniform on S³, and the unit
    quaternions cover SO(3) twice with the uniform measure mapping to Haar measure.
    (Composing three independent uniform axis angles is *not* Haar; its E[(tr R)²] is
    0.875 instead of 1.)

    Args:
        n: number of rotations (≥ 0).
        generator: a ``torch.Generator`` on ``device`` for reproducible draws.
        device: where to sample and return (defaults to the generator's device or CPU).
        dtype: floating dtype of the result; sampling is done in float32 or wider.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if device is None and generator is not None:
        device = generator.device
    work = torch.float64 if dtype == torch.float64 else torch.float32
    q = torch.randn(n, 4, generator=generator, device=device, dtype=work)
    return _quaternion_to_matrix(q).to(dtype)  # ‖q‖ = 0 has probability zero


def axis_rotation(
    axis: str | Tensor | tuple[float, float, float],
    angles: Tensor | float,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Rotations by ``angles`` (radians) about ``axis``, shape ``(m, 3, 3)`` (Rodrigues).

    Args:
        axis: ``"x"``, ``"y"``, ``"z"`` or a 3-vector (normalised inside).
        angles: a scalar or a 1-D tensor of m angles in radians (right-hand rule).
    """
    angles = torch.as_tensor(angles, dtype=dtype, device=device)
    if not angles.is_floating_point():
        angles = angles.to(torch.get_default_dtype())
    angles = angles.reshape(-1)
    if isinstance(axis, str):
        if axis.lower() not in _AXES:
            raise ValueError(f"axis must be 'x', 'y', 'z' or a 3-vector, got {axis!r}")
        axis = _AXES[axis.lower()]
    u = torch.as_tensor(axis, dtype=angles.dtype, device=angles.device).reshape(-1)
    if u.numel() != 3:
        raise ValueError(f"axis must be a 3-vector, got {u.numel()} components")
    norm = u.norm()
    if not norm > 0:
        raise ValueError("axis must be a non-zero vector")
    return axis_angle_matrices(u / norm, angles)


def axis_angle_matrices(axes: Tensor, angles: Tensor) -> Tensor:
    """Rodrigues' formula R = I + sin θ [u]ₓ + (1 − cos θ) [u]ₓ²: unit ``axes`` (n, 3), or
    one unit axis (3,) shared by all, and ``angles`` (n,) radians → ``(n, 3, 3)``."""
    ux, uy, uz = axes.unbind(-1)
    zero = torch.zeros_like(ux)
    k = torch.stack([zero, -uz, uy, uz, zero, -ux, -uy, ux, zero], dim=-1).reshape(*axes.shape[:-1], 3, 3)  # [u]ₓ
    s, c = torch.sin(angles)[:, None, None], torch.cos(angles)[:, None, None]
    eye = torch.eye(3, dtype=axes.dtype, device=axes.device)
    return eye + s * k + (1 - c) * (k @ k)


def random_orthogonal(
    n: int,
    d: int,
    *,
    special: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``n`` Haar-distributed ``d × d`` orthogonal matrices, shape ``(n, d, d)``.

    QR of a Gaussian matrix, with the columns of Q multiplied by sign(diag R) so the
    result is Haar on O(d) (Mezzadri 2007). With ``special=True`` the first column of
    those with det −1 is negated, which maps Haar on O(d) to Haar on SO(d).
    """
    if d < 1 or n < 0:
        raise ValueError(f"need n >= 0 and d >= 1, got n={n}, d={d}")
    if device is None and generator is not None:
        device = generator.device
    work = torch.float64
    g = torch.randn(n, d, d, generator=generator, device=device, dtype=work)
    q, r = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    q = q * signs[:, None, :]
    if special:
        det = torch.linalg.det(q)
        flip = torch.ones(n, d, dtype=work, device=q.device)
        flip[:, 0] = torch.where(det < 0, -1.0, 1.0)
        q = q * flip[:, None, :]
    return q.to(dtype)


def solve_wahba(
    F: Tensor,
    Fa: Tensor,
    *,
    allow_reflection: bool = False,
    compute_dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    r"""The rotation that best maps ``F`` onto ``Fa`` (Wahba's problem; Kabsch/Umeyama).

    Rows convention: ``F``, ``Fa`` are ``(..., n, d)`` with row i = f(x_i) and
    f(a(x_i)). Returns ``R`` ``(..., d, d)`` minimising :math:`\lVert F R^\top - F_a
    \rVert_{Fro}`. With :math:`B = F_a^\top F = U S V^\top`, :math:`R = U\,\mathrm{diag}(1,
    …, 1, s)\,V^\top` with :math:`s = \det(U V^\top)`: flipping the last singular
    direction keeps det R = +1 when the best orthogonal fit is a reflection (the
    classic Kabsch bug is to omit it). With ``allow_reflection=True``, s = 1 (best fit
    in O(d)).

    Args:
        F, Fa: ``(..., n, d)`` embeddings, d ≥ 2.
        allow_reflection: solve over O(d) instead of SO(d).
        compute_dtype: accumulate and decompose in this dtype (float64 by default;
            ``None`` keeps the input's). The result has the input's dtype.
    """
    if F.shape != Fa.shape or F.ndim < 2:
        raise ValueError(f"F and Fa must have the same shape (..., n, d), got {tuple(F.shape)} and {tuple(Fa.shape)}")
    d = F.shape[-1]
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    out_dtype = F.dtype if F.is_floating_point() else torch.float32
    work = compute_dtype or (torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype)
    a, b = F.to(work), Fa.to(work)
    cross = b.transpose(-1, -2) @ a  # B = Faᵀ F, (..., d, d)
    u, _, vh = torch.linalg.svd(cross)
    if not allow_reflection:
        det = torch.linalg.det(u @ vh)  # ±1
        u = u.clone()
        u[..., :, -1] = u[..., :, -1] * torch.where(det < 0, -1.0, 1.0).to(work)[..., None]
    return (u @ vh).to(out_dtype)


def wahba_error(F: Tensor, Fa: Tensor, *, normalized: bool = False, **solve_kwargs) -> Tensor:
    r"""The paper's W_f (CARE §4): :math:`\min_{R \in SO(d)} \lVert F R^\top - F_a
    \rVert_{Fro}`, the Frobenius norm (not squared, not averaged).

    ``normalized=True`` divides by √n so batches of different sizes compare.
    Batched over leading dimensions; returns a tensor of shape ``F.shape[:-2]``.
    """
    rotation = solve_wahba(F, Fa, **solve_kwargs)
    work = solve_kwargs.get("compute_dtype", torch.float64)  # as solve_wahba: None keeps F's dtype (16-bit: float32)
    work = work or (torch.float32 if rotation.dtype in (torch.float16, torch.bfloat16) else rotation.dtype)
    residual = F.to(work) @ rotation.to(work).transpose(-1, -2) - Fa.to(work)
    error = torch.linalg.matrix_norm(residual, ord="fro")
    if normalized:
        error = error / math.sqrt(F.shape[-2])
    return error.to(F.dtype if F.is_floating_point() else torch.float32)

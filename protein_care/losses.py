"""The CARE loss core: InfoNCE, the orthogonal-equivariance loss, and their sums.

Pure functions on embedding tensors (any device, any float dtype; Gram matrices and
logits are computed in float32 or wider, also inside an autocast region: see
:mod:`protein_care.precision`), with thin :class:`torch.nn.Module` wrappers
that only hold settings. Nothing here knows about proteins or images: the protein
trainer and ``vision_benchmarks`` both call these functions.

Paper: "Contrastive Augmentation-induced Rotational Equivariance" (CARE). Notation:
``f : X -> S^{d-1}``, augmentations ``a ~ A``; ``z = f(a(x))`` rows are L2-normalised.

Example::

    >>> z1, z2 = F.normalize(torch.randn(8, 16), dim=1), F.normalize(torch.randn(8, 16), dim=1)
    >>> parts = care_loss(z1, z2, z1, z2, temperature=0.5, lam=0.01, n_split=2)
    >>> sorted(parts)
    ['alignment', 'equivariance', 'info_nce', 'loss', 'uniformity']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from protein_care.options import NORMALIZATIONS
from protein_care.precision import compute_dtype, full_precision


# --------------------------------------------------------------------------- checks


def _check_temperature(temperature: float) -> None:
    if not temperature > 0 or not float(temperature) == float(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")


def _check_pair(name1: str, z1: Tensor, name2: str, z2: Tensor) -> None:
    if z1.ndim != 2 or z2.ndim != 2:
        raise ValueError(
            f"{name1} and {name2} must be 2-D [n, d], got shapes {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape != z2.shape:
        raise ValueError(f"{name1} and {name2} must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 1:
        raise ValueError(f"{name1} must hold at least one row, got shape {tuple(z1.shape)}")


# --------------------------------------------------------------------------- InfoNCE


@full_precision
def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.5, return_parts: bool = False):
    r"""NT-Xent / InfoNCE on ``n`` positive pairs (SimCLR form; CARE paper §3, L_inv + L_unif).

    With ``z = [z1; z2]`` (2n × d, rows L2-normalised) and ``s = z zᵀ / τ``, row ``i``'s
    positive is its partner ``pos(i) = i ± n`` and its denominator runs over the other
    2n − 1 entries, the positive included:

    .. math::
        D_i = \sum_{k \ne i} e^{s_{ik}}, \qquad
        \mathcal{L} = \frac{1}{2n}\sum_i \big(-s_{i,\mathrm{pos}(i)} + \log D_i\big).

    The two parts, as the authors' release reports them: ``alignment`` =
    mean_i(−s_{i,pos(i)}) and ``uniformity`` = mean_i log Σ_{k ≠ i, pos(i)} e^{s_ik},
    the negatives only (Wang & Isola's L_unif; the ``unif`` ablation trains on it). So
    loss ≥ alignment + uniformity, not equal: D_i also holds the positive. Computed
    with log-sum-exp, finite for τ down to 0.01.

    Args:
        z1: ``(n, d)`` embeddings of the first views.
        z2: ``(n, d)`` embeddings of the second views; row i pairs with ``z1[i]``.
        temperature: τ > 0.
        return_parts: return a dict with ``loss``, ``alignment``, ``uniformity``.

    Returns:
        A scalar tensor, or the dict described above.
    """
    _check_temperature(temperature)
    _check_pair("z1", z1, "z2", z2)
    n = z1.shape[0]
    if n < 2:  # the other pairs are the negatives: with one pair uniformity is log 0 = -inf
        raise ValueError(f"info_nce needs at least 2 pairs (the other pairs are the negatives), got {n}")
    z = torch.cat([z1, z2], dim=0).to(compute_dtype(z1))  # (2n, d)
    logits = (z @ z.T) / temperature  # (2n, 2n)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    partner = torch.arange(2 * n, device=z.device).roll(n)  # pos(i) = (i + n) mod 2n
    positive = logits.gather(1, partner[:, None]).squeeze(1)  # (2n,)
    log_denominator = torch.logsumexp(logits, dim=1)  # (2n,) over k != i
    negatives = logits.scatter(1, partner[:, None], float("-inf"))  # k != i, pos(i)
    alignment = -positive.mean()
    uniformity = torch.logsumexp(negatives, dim=1).mean()
    loss = alignment + log_denominator.mean()
    if return_parts:
        return {"loss": loss, "alignment": alignment, "uniformity": uniformity}
    return loss


@full_precision
def info_nce_queue(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    r"""MoCo-v2 InfoNCE with a queue of negatives.

    For query ``q_i`` and key ``k_i`` (positives) and queue rows ``u_m`` (keys of past
    batches, negatives): logits ``[q_i·k_i, q_i·u_1, …, q_i·u_M] / τ``, cross-entropy
    with the positive at index 0, mean over rows:

    .. math:: \mathcal{L} = -\frac{1}{n}\sum_i \log
        \frac{e^{q_i\cdot k_i/\tau}}{e^{q_i\cdot k_i/\tau} + \sum_m e^{q_i\cdot u_m/\tau}}

    Args:
        q: ``(n, d)`` queries (gradients flow here).
        k: ``(n, d)`` keys from the momentum encoder (treated as given).
        queue: ``(M, d)`` past keys.
        temperature: τ > 0.
    """
    _check_temperature(temperature)
    _check_pair("q", q, "k", k)
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be [M, {q.shape[1]}], got shape {tuple(queue.shape)}")
    dtype = compute_dtype(q)
    q, k, queue = q.to(dtype), k.to(dtype), queue.to(dtype)
    positive = (q * k).sum(dim=1, keepdim=True)  # (n, 1)
    negative = q @ queue.T  # (n, M)
    logits = torch.cat([positive, negative], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return nn.functional.cross_entropy(logits, target)


# --------------------------------------------------------------------------- equivariance


@full_precision
def equivariance_loss(
    z1: Tensor,
    z2: Tensor,
    n_split: int,
    normalization: str = "release",
    form: Tensor | None = None,
) -> Tensor:
    r"""Orthogonal-equivariance loss L_equi (CARE, eq. (3); §3.2 for other forms).

    The ``n`` rows are ``n_split`` consecutive chunks of ``c = n / n_split`` rows; every
    sample of chunk ``k`` saw the same augmentation pair (ã1, ã2), so ``z1 = f(ã1(x))``
    and ``z2 = f(ã2(x))``. Per chunk, with the bilinear form ``M`` (identity by default):

    .. math::
        G^{(1)} = z_1 M z_1^\top,\quad G^{(2)} = z_2 M z_2^\top,\quad
        E_{ij} = (G^{(1)}_{ij} - G^{(2)}_{ij})^2 \ (i \ne j)

    ``normalization="release"`` (the authors' code; the paper's λ values are tuned for
    it): chunk loss = 2 · mean_i Σ_{j≠i} E_ij, which grows with the chunk size.
    ``normalization="pair_mean"`` (the paper's expectation): mean over i ≠ j of E_ij.
    The result is the mean over chunks. It is 0 when, chunk by chunk, z2 = z1 Qᵀ for
    some Q preserving M (orthogonal for the identity, Lorentz for the Minkowski form,
    symplectic for the symplectic form). The converse holds for the identity (paper
    Prop. 2), and for the other forms only when each chunk's rows are linearly
    independent: an indefinite form's null vectors change no Gram entry.

    Args:
        z1, z2: ``(n, d)`` embeddings of the two equivariance views.
        n_split: number of chunks; must divide n, and each chunk needs ≥ 2 rows.
        normalization: ``"release"`` or ``"pair_mean"``.
        form: optional ``(d, d)`` matrix M of the bilinear form.
    """
    _check_pair("z1", z1, "z2", z2)
    n, d = z1.shape
    if not isinstance(n_split, int) or isinstance(n_split, bool) or n_split < 1:
        raise ValueError(f"n_split must be a positive integer, got {n_split!r}")
    if n % n_split:
        raise ValueError(f"n_split={n_split} must divide the batch size n={n}")
    chunk = n // n_split
    if chunk < 2:
        raise ValueError(f"each chunk needs at least 2 rows: n={n}, n_split={n_split} gives chunk size {chunk}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    dtype = compute_dtype(z1)
    a = z1.to(dtype).reshape(n_split, chunk, d)  # (chunks, c, d)
    b = z2.to(dtype).reshape(n_split, chunk, d)
    if form is not None:
        if form.shape != (d, d):
            raise ValueError(f"form must be a ({d}, {d}) matrix, got shape {tuple(form.shape)}")
        form = form.to(device=a.device, dtype=dtype)
        gram1 = a @ form @ a.transpose(1, 2)  # (chunks, c, c)
        gram2 = b @ form @ b.transpose(1, 2)
    else:
        gram1 = a @ a.transpose(1, 2)
        gram2 = b @ b.transpose(1, 2)
    difference = gram1 - gram2  # (chunks, c, c)
    # Σ_{i≠j} E_ij = Σ_ij E_ij − Σ_i E_ii (cheaper than masking the c×c matrix)
    per_chunk_sum = difference.pow(2).sum(dim=(1, 2)) - torch.diagonal(difference, dim1=1, dim2=2).pow(2).sum(1)
    if normalization == "release":
        per_chunk = 2.0 * per_chunk_sum / chunk
    else:
        per_chunk = per_chunk_sum / (chunk * (chunk - 1))
    return per_chunk.mean()


def minkowski_form(d: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The Minkowski form diag(−1, 1, …, 1); the loss with it is invariant under the
    Lorentz group O(1, d−1) (paper §3.2, hyperbolic embeddings)."""
    if d < 2:
        raise ValueError(f"d must be >= 2 for a Minkowski form, got {d}")
    diagonal = torch.ones(d, dtype=dtype, device=device)
    diagonal[0] = -1.0
    return torch.diag(diagonal)


def symplectic_form(d: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The standard symplectic form [[0, I], [−I, 0]] (d even); the loss with it is
    invariant under the symplectic group Sp(d) (paper §3.2)."""
    if d < 2 or d % 2:
        raise ValueError(f"d must be even and >= 2 for a symplectic form, got {d}")
    h = d // 2
    eye = torch.eye(h, dtype=dtype, device=device)
    zero = torch.zeros(h, h, dtype=dtype, device=device)
    return torch.cat([torch.cat([zero, eye], dim=1), torch.cat([-eye, zero], dim=1)], dim=0)


# --------------------------------------------------------------------------- sums of parts


@dataclass(frozen=True)
class LossVariant:
    """Which terms a named objective uses: both InfoNCE terms (InfoNCE itself), alignment
    alone (L_inv), uniformity alone (L_unif, negatives only), each + λ·equivariance
    when ``equivariance`` (the λ factor comes from the caller)."""

    alignment: bool
    uniformity: bool
    equivariance: bool
    description: str

    @property
    def needs_equivariance_views(self) -> bool:
        return self.equivariance


#: The paper's objectives and its Figure 7 ablations. The one place that decides which
#: parts a name sums; trainers look names up here.
LOSS_VARIANTS: dict[str, LossVariant] = {
    "care": LossVariant(True, True, True, "CARE: InfoNCE + λ·L_equi"),
    "simclr": LossVariant(True, True, False, "InfoNCE (SimCLR)"),
    "inv": LossVariant(True, False, False, "L_inv: alignment only"),
    "unif": LossVariant(False, True, False, "L_unif: uniformity only"),
    "equi-unif": LossVariant(False, True, True, "L_unif + λ·L_equi"),
}


def loss_variant(name: str) -> LossVariant:
    """Look up a named objective, with a clear error for an unknown name."""
    try:
        return LOSS_VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSS_VARIANTS)}") from None


@full_precision
def combined_loss(
    name: str,
    z1: Tensor,
    z2: Tensor,
    z1_eq: Tensor | None = None,
    z2_eq: Tensor | None = None,
    *,
    temperature: float,
    lam: float = 0.0,
    n_split: int = 1,
    normalization: str = "release",
) -> dict[str, Tensor]:
    """The objective ``name`` (see :data:`LOSS_VARIANTS`) on invariance views ``z1, z2``
    and, when it has an equivariance term, equivariance views ``z1_eq, z2_eq``.

    Returns a dict with ``loss`` (what to minimise) and every part that was computed:
    ``info_nce``, ``alignment``, ``uniformity`` and (when used) ``equivariance``.
    """
    variant = loss_variant(name)
    parts = info_nce(z1, z2, temperature, return_parts=True)
    out = {
        "info_nce": parts["loss"],
        "alignment": parts["alignment"],
        "uniformity": parts["uniformity"],
    }
    if variant.alignment and variant.uniformity:  # both: InfoNCE itself (its denominators hold the positive)
        loss = parts["loss"]
    elif variant.alignment:
        loss = parts["alignment"]
    elif variant.uniformity:
        loss = parts["uniformity"]
    else:
        loss = parts["alignment"].new_zeros(())
    if variant.equivariance:
        if z1_eq is None or z2_eq is None:
            raise ValueError(f"loss {name!r} needs the equivariance views z1_eq and z2_eq")
        equi = equivariance_loss(z1_eq, z2_eq, n_split, normalization)
        out["equivariance"] = equi
        loss = loss + lam * equi
    out["loss"] = loss
    return out


def orbit_similarity(z1_eq: Tensor, z2_eq: Tensor) -> Tensor:
    r"""Mean cosine between the two equivariance views of each sample (unit rows):

    .. math:: S = \frac{1}{n} \sum_i \langle z(R_1 x_i), z(R_2 x_i) \rangle .

    1 for an encoder that ignores the augmentation; an equivariant one gets the share of
    its embedding in the trivial representation. L_equi cannot tell these apart (an
    invariant encoder makes both views' Gram matrices equal), so adding μ·S to the loss
    penalises the invariant shortcut. Not in the paper: measured in
    ``benchmarks/results/protein_settings.md``."""
    dtype = compute_dtype(z1_eq)
    return (z1_eq.to(dtype) * z2_eq.to(dtype)).sum(dim=1).mean()


def care_loss(
    z1: Tensor,
    z2: Tensor,
    z1_eq: Tensor,
    z2_eq: Tensor,
    *,
    temperature: float,
    lam: float,
    n_split: int,
    normalization: str = "release",
) -> dict[str, Tensor]:
    r"""CARE (paper eq. (4)): :math:`\mathcal{L} = \mathrm{InfoNCE}(z_1, z_2) + \lambda\,
    \mathcal{L}_{equi}(\tilde z_1, \tilde z_2)`.

    ``z1, z2`` are the invariance views (independent augmentations per sample);
    ``z1_eq, z2_eq`` the equivariance views (one augmentation pair per chunk of
    ``n_split``). Returns ``loss``, ``info_nce``, ``alignment``, ``uniformity``,
    ``equivariance``. Computed in float32 or wider inside autocast too
    (:func:`combined_loss` is :func:`~protein_care.precision.full_precision`).
    """
    return combined_loss(
        "care", z1, z2, z1_eq, z2_eq,
        temperature=temperature, lam=lam, n_split=n_split, normalization=normalization,
    )


# --------------------------------------------------------------------------- modules


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce`; holds the temperature.

    Raises ``ValueError`` at construction for a non-positive temperature.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        _check_temperature(temperature)
        self.temperature = float(temperature)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return info_nce(z1, z2, self.temperature)


class EquivarianceLoss(nn.Module):
    """Module form of :func:`equivariance_loss`; holds ``n_split``, the normalisation
    and an optional bilinear form (registered as a buffer so it follows ``.to()``)."""

    def __init__(self, n_split: int, normalization: str = "release", form: Tensor | None = None):
        super().__init__()
        if not isinstance(n_split, int) or n_split < 1:
            raise ValueError(f"n_split must be a positive integer, got {n_split!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.n_split = n_split
        self.normalization = normalization
        self.register_buffer("form", form, persistent=False)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return equivariance_loss(z1, z2, self.n_split, self.normalization, self.form)


class CombinedLoss(nn.Module):
    """Module form of :func:`combined_loss`: a named objective with its settings."""

    def __init__(
        self,
        name: str = "care",
        *,
        temperature: float = 0.5,
        lam: float = 0.01,
        n_split: int = 4,
        normalization: str = "release",
    ):
        super().__init__()
        self.variant = loss_variant(name)
        _check_temperature(temperature)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam!r}")
        if not isinstance(n_split, int) or n_split < 1:
            raise ValueError(f"n_split must be a positive integer, got {n_split!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.name = name
        self.temperature = float(temperature)
        self.lam = float(lam)
        self.n_split = n_split
        self.normalization = normalization

    def forward(self, z1, z2, z1_eq=None, z2_eq=None) -> dict[str, Tensor]:
        return combined_loss(
            self.name, z1, z2, z1_eq, z2_eq, temperature=self.temperature, lam=self.lam,
            n_split=self.n_split, normalization=self.normalization,
        )

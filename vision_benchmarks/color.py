"""The colour ops of the SimCLR pipeline (ColorJitter, RandomGrayscale) on float batches
``(n, 3, H, W)`` in [0, 1], one parameter per image.

Each op equals ``torchvision.transforms.v2.functional`` on float images to ~1e-6
(tests/vision_benchmarks/test_augment.py). On a GPU these small images are bound by
kernel launches, not arithmetic, so the formulas are written to dispatch few ops:

- brightness, contrast and saturation are one blend ``clamp(f·x + (1−f)·o)`` with
  o = 0, the mean luma, the luma; with per-image coefficients α, β, γ one expression
  ``clamp(α·x + β·mean(luma) + γ·luma)`` is any of the three, or the identity (α = 1,
  β = γ = 0), so a ColorJitter position is one blend for every image (:func:`blend`);
- the hue rotation is the closed form of RGB → HSV → RGB (:func:`hue_rotate`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from protein_care.device_constants import constant

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale
HUE_CHANNEL_OFFSETS = (5.0, 3.0, 1.0)  # n of the closed-form HSV → RGB, for R, G, B
_TINY = torch.finfo(torch.float32).tiny


def _per_sample(values: Tensor, x: Tensor) -> Tensor:
    return values.to(x.dtype).view(-1, 1, 1, 1)


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype`` (no op dispatched when it already is)."""
    return t if t.dtype == dtype else t.to(dtype)


def grayscale(x: Tensor) -> Tensor:
    """Luma ``(n, 1, H, W)`` = 0.2989·R + 0.587·G + 0.114·B (torchvision's weights), as
    one weighted channel sum."""
    return (x * constant(GRAY_WEIGHTS, x.device, x.dtype, (1, 3, 1, 1))).sum(dim=1, keepdim=True)


def random_grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """Replace the images where ``mask`` is true by their luma in all 3 channels."""
    return torch.where(mask.view(-1, 1, 1, 1), grayscale(x), x)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, x)
    return (f * x + (1 - f) * other).clamp(0, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(f·x)``, one factor per image."""
    return (_per_sample(factor, x) * x).clamp(0, 1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean luma: ``clamp(f·x + (1−f)·mean(gray(x)))``."""
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's luma: ``clamp(f·x + (1−f)·gray(x))``."""
    return _blend(x, grayscale(x), factor)


def blend(x: Tensor, alpha: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
    """``clamp(α·x + β·mean(gray(x)) + γ·gray(x))`` with per-image ``(n, 1, 1, 1)``
    coefficients: brightness f is (f, 0, 0), contrast (f, 1−f, 0), saturation
    (f, 0, 1−f), the identity (1, 0, 0) (exact on [0, 1]: the added terms are 0)."""
    gray = grayscale(x)
    other = torch.addcmul(beta * gray.mean(dim=(2, 3), keepdim=True), gamma, gray)
    return torch.addcmul(other, alpha, x).clamp_(0, 1)


def hue_offsets(shift: Tensor) -> Tensor:
    """``(n, 3, 1, 1)`` offsets ``n_c + 6·shift`` (n_c = 5, 3, 1 for R, G, B) of
    :func:`hue_rotate` for hue shifts in turns."""
    return torch.add(constant(HUE_CHANNEL_OFFSETS, shift.device, torch.float32, (1, 3, 1, 1)),
                     _as(shift, torch.float32).view(-1, 1, 1, 1), alpha=6)


def hue_rotate(x: Tensor, offsets: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` turns, given as ``offsets = n_c + 6·shift``
    (:func:`hue_offsets`), as RGB → HSV → RGB in closed form:

    with V = max(R, G, B), C = V − min(R, G, B) (the chroma, = V·S) and j the channel
    of the maximum (R, G, B first on ties), 6·hue = 2j + (x_{j+1} − x_{j+2}) / C; then
    channel c = V − C·clamp(min(k, 4 − k), 0, 1), k = (n_c + 6·hue + 6·shift) mod 6.

    This is the standard HSV → RGB, f(n) = V − V·S·max(0, min(k, 4−k, 1)), and equals
    torchvision's sector table (``_hsv_to_rgb``) exactly in real arithmetic; grey pixels
    (C = 0) stay V exactly."""
    value, channel = x.max(dim=1, keepdim=True)
    chroma = value - x.amin(dim=1, keepdim=True)
    rolled = x.roll(-1, dims=1) - x.roll(1, dims=1)  # channel j: x_{j+1} − x_{j+2}
    sextant = torch.addcmul(rolled, chroma, constant((0.0, 2.0, 4.0), x.device, x.dtype, (1, 3, 1, 1)))
    hue6 = sextant.gather(1, channel)  # C·6·hue of the maximal channel (0 where C = 0)
    k = torch.addcdiv(offsets, hue6, chroma.clamp(min=_TINY)).remainder_(6)
    return torch.addcmul(value, chroma, torch.minimum(k, 4 - k).clamp_(0, 1), value=-1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` turns (in [−0.5, 0.5]) per image, as torchvision's
    (after PIL's) RGB → HSV → RGB; see :func:`hue_rotate`."""
    return hue_rotate(x, _as(hue_offsets(shift), x.dtype))


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
NO_OP = 4  # jitter plan code: nothing at this position


def jitter_plan(factors: Tensor, order: Tensor, apply: Tensor) -> tuple[Tensor, Tensor]:
    """What ColorJitter does at each of its 4 positions, for every image at once.

    Returns ``code`` ``(n, 4)``: the op at each position (0 brightness, 1 contrast,
    2 saturation, 3 hue, :data:`NO_OP` where ``apply`` is false), and ``coefficients``
    ``(4, n, 7, 1, 1)``: per position and image α, β, γ of :func:`blend` (f = the
    factor of the op there: brightness (f, 0, 0), contrast (f, 1−f, 0), saturation
    (f, 0, 1−f), hue or nothing (1, 0, 0)), a hue flag (1 where the op is hue) and the 3
    hue offsets of :func:`hue_rotate`."""
    code = torch.where(apply[:, None], order, NO_OP)
    f = _as(factors, torch.float32).gather(1, order)  # the factor of the op at each position
    rest = 1 - f
    coefficients = torch.stack([
        torch.where(code < 3, f, 1.0),
        torch.where(code == 1, rest, 0.0),
        torch.where(code == 2, rest, 0.0),
        (code == 3).float(),
    ], dim=2)  # (n, 4, 4)
    offsets = hue_offsets(factors[:, 3]).view(-1, 1, 3).expand(-1, 4, -1)
    return code, torch.cat([coefficients, offsets], dim=2).transpose(0, 1).view(4, -1, 7, 1, 1)


def color_jitter(x: Tensor, factors: Tensor, order: Tensor, apply: Tensor, sync_free: bool | None = None) -> Tensor:
    """ColorJitter with a per-image random order of (brightness, contrast, saturation,
    hue), applied only where ``apply`` is true: at each position one :func:`blend` (the
    identity where the op there is hue) and one hue rotation (kept only where it is).
    ``sync_free`` (default: on CUDA) evaluates both on the whole batch (no host sync,
    ~25 ops a position); otherwise each runs on the rows that need it (``nonzero``)."""
    if sync_free is None:
        sync_free = x.is_cuda
    code, coefficients = jitter_plan(factors, order, apply)
    for position, c in enumerate(_as(coefficients, x.dtype).unbind(0)):
        alpha, beta, gamma, is_hue, offsets = c.split([1, 1, 1, 1, 3], dim=1)
        if sync_free:
            x = blend(x, alpha, beta, gamma)
            x = torch.lerp(x, hue_rotate(x, offsets), is_hue)  # exact at is_hue = 0 and 1
            continue
        rows = (code[:, position] < 3).nonzero().squeeze(1)
        if rows.numel():
            x = x.index_copy(0, rows, blend(x[rows], alpha[rows], beta[rows], gamma[rows]))
        rows = (code[:, position] == 3).nonzero().squeeze(1)
        if rows.numel():
            x = x.index_copy(0, rows, hue_rotate(x[rows], offsets[rows]))
    return x

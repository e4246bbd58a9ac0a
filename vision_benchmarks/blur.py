"""Batched Gaussian blur with one σ per image: torchvision's float filter or OpenCV's
fixed-point uint8 filter (``augment.blur_impl``).

Both filters are separable with the kernel G_i ∝ exp(−(i − (k−1)/2)² / 2σ²), σ_y = σ_x and
reflect-101 borders (gfedcb|abcdefgh|gfedcba: torch's ``reflect`` pad, cv2's default).

- ``"torchvision"``: the float kernel normalised to 1, applied in float32
  (``transforms.v2.functional.gaussian_blur`` on float images, to ~1e-6).
- ``"cv2"``: what ``cv2.GaussianBlur(img, (k, k), σ)`` computes on a uint8 image (the
  release's CIFAR/STL10 invariance-view blur): the input is rounded to uint8 levels, the
  kernel is quantised to integers summing to 256 (OpenCV's ``getGaussianKernelBitExact``
  then ``getGaussianKernelFixedPoint_ED``: round half to even with the rounding error
  carried to the next tap, the centre takes the rest), the row pass is exact in units
  of 1/256, the column pass in units of 1/65536, and the result is rounded half up to
  a uint8 level. Every intermediate is an integer below 2²⁴, so float32 holds it exactly
  (tests: bit-exact against cv2).

The taps are summed as multiply-adds of shifted views (no convolution kernels, so no
TF32 or autocast on a GPU) and the result is float in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from protein_care.device_constants import cached_tensor

BLUR_IMPLS = ("torchvision", "cv2")


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """``(n, k)`` normalised 1-D Gaussians exp(−x²/2σ²), x = −(k−1)/2 … (k−1)/2."""
    half = (kernel_size - 1) / 2
    xs = cached_tensor(("gaussian_offsets", kernel_size), sigma.device,
                       lambda dev: torch.linspace(-half, half, kernel_size, device=dev, dtype=torch.float32))
    sigma = sigma if sigma.dtype == torch.float32 else sigma.float()
    return torch.softmax(-0.5 * (xs / sigma.unsqueeze(1)) ** 2, dim=1)


def cv2_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """``(n, k)`` OpenCV's fixed-point uint8 Gaussian kernels as integers summing to 256
    (float32), one per σ > 0 (see the module docstring)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    s = sigma.detach().to("cpu", torch.float64)
    half = kernel_size // 2
    x = torch.arange(1 - kernel_size, 0, 2, dtype=torch.float64)[:half]  # 2·offset of the left taps
    values = torch.exp((x * x)[None, :] * (-0.125 / (s * s))[:, None])  # (n, half)
    mul = 1.0 / (values.sum(dim=1) * 2 + 1)
    weights = torch.empty(s.shape[0], kernel_size, dtype=torch.float64)
    err = torch.zeros_like(s)
    for i in range(half):  # error diffusion from the outer taps inwards
        adjusted = values[:, i] * mul * 256 + err
        v = torch.round(adjusted)  # half to even, as cvRound(softdouble)
        err = adjusted - v
        weights[:, i] = weights[:, kernel_size - 1 - i] = v
    weights[:, half] = 256 - 2 * weights[:, :half].sum(dim=1)
    return weights.float().to(sigma.device)


def _separable(x: Tensor, weights: Tensor) -> Tensor:
    """Columns then rows filtered by the per-image taps ``weights`` (n, k), reflect-101:
    y[.., i, :] = Σ_j w_j·x_pad[.., i + j, :]. Each pass takes the k shifted windows of
    axis 2 as one ``unfold`` view (n, C, k, B, A) and sums them over k, which leaves the
    filtered axis last: (n, C, H, W) → (n, C, W, H) → (n, C, H, W)."""
    n, k = weights.shape
    pad = k // 2
    w = (weights if weights.dtype == x.dtype else weights.to(x.dtype)).view(n, 1, k, 1, 1)
    for _ in range(2):
        x = (F.pad(x, (0, 0, pad, pad), mode="reflect").unfold(2, x.shape[2], 1) * w).sum(dim=2)
    return x


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int, mask: Tensor | None = None,
                  impl: str = "torchvision") -> Tensor:
    """Blur image k of the float batch ``x`` (n, C, H, W) in [0, 1] with ``sigma[k]``
    (only where ``mask`` is true), with torchvision's or cv2's filter (``impl``)."""
    if impl not in BLUR_IMPLS:
        raise ValueError(f"blur impl must be one of {BLUR_IMPLS}, got {impl!r}")
    with torch.autocast(x.device.type, enabled=False):
        x = x if x.dtype == torch.float32 else x.float()
        if impl == "torchvision":
            y = _separable(x, gaussian_kernels(sigma, kernel_size))
        else:
            levels = (x * 255).round_().clamp_(0, 255)
            y = _separable(levels, cv2_kernels(sigma, kernel_size))  # integers in units of 1/65536
            y = torch.floor((y + 32768) / 65536).clamp_(0, 255) / 255
    return y if mask is None else torch.where(mask.view(-1, 1, 1, 1), y, x)

"""The geometric and per-pixel ops of the batched SimCLR pipeline: uint8 → float, the
antialiased bilinear resized crop (one batched separable matmul), resize, horizontal flip
and normalisation. Each equals its ``torchvision.transforms.v2.functional`` counterpart on
float images (tests/vision_benchmarks/test_augment.py). The colour ops are in
:mod:`vision_benchmarks.color`, the blur in :mod:`vision_benchmarks.blur`, and the pipeline
that draws parameters and applies them in :mod:`vision_benchmarks.augment`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from protein_care.device_constants import cached_tensor, constant


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] → float32 [0, 1]; float images are returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images if images.dtype == torch.float32 else images.float()


def _pixel_centres(size: int, device) -> Tensor:
    return cached_tensor(("pixel_centres", size), device,
                         lambda dev: torch.arange(size, device=dev, dtype=torch.float32) + 0.5)


def _resample_matrix(start: Tensor, length: Tensor, in_size: int, out_size: int) -> Tensor:
    """``(..., out_size, in_size)`` weights of torchvision's antialiased bilinear resize of
    the windows [start, start + length) (integer tensors of one shape) to ``out_size``
    pixels (the triangle filter of ATen's ``_upsample_bilinear2d_aa``: support
    max(scale, 1), renormalised at the window's edges; for upsampling it equals plain
    bilinear with edge clamping). Input pixels at or past ``start + length`` weigh 0."""
    dtype = torch.float32
    scale = (length.to(dtype) / out_size).unsqueeze(-1)  # (..., 1)
    support = scale.clamp(min=1.0).unsqueeze(-1)  # (..., 1, 1)
    centre = start.to(dtype).unsqueeze(-1) + scale * _pixel_centres(out_size, start.device)  # (..., out)
    in_pos = _pixel_centres(in_size, start.device)  # pixel centres
    t = (in_pos - centre.unsqueeze(-1)) / support
    weight = (1 - t.abs()).clamp_(min=0)
    inside = (in_pos >= start.unsqueeze(-1)) & (in_pos < (start + length).unsqueeze(-1))
    weight = weight * inside.unsqueeze(-2)
    return weight / weight.sum(dim=-1, keepdim=True)


def resized_crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop ``boxes[k] = (top, left, h, w)`` of image k and resize it to ``size × size``
    (bilinear, antialiased), all in one batched separable matmul:
    ``out_k = W_y,k · crop_k · W_x,kᵀ`` (W_y and W_x built together). Equals
    ``v2.functional.resized_crop(..., antialias=True)`` on float images."""
    x = to_float(images)
    _, _, height, width = x.shape
    wy, wx = _resample_matrix(boxes[:, :2], boxes[:, 2:], max(height, width), size).unbind(1)  # (n, size, ·)
    if height != width:
        wy, wx = wy[..., :height], wx[..., :width]
    x = torch.matmul(x, wx.transpose(1, 2).unsqueeze(1))  # (n, C, H, size)
    return torch.matmul(wy.unsqueeze(1), x)  # (n, C, size, size)


def resize(images: Tensor, size: int) -> Tensor:
    """The whole image resized to ``size × size`` (as :func:`resized_crop`)."""
    n, _, height, width = images.shape
    if (height, width) == (size, size):
        return to_float(images)
    box = constant((0, 0, height, width), images.device, torch.int64).expand(n, 4)
    return resized_crop(images, box, size)


def hflip(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror left-right the images where ``mask`` is true."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def normalize(x: Tensor, mean, std) -> Tensor:
    """``(x − mean) / std`` per channel."""
    shape = (1, -1, 1, 1)
    mean = constant(tuple(float(v) for v in mean), x.device, x.dtype, shape)
    return (x - mean) / constant(tuple(float(v) for v in std), x.device, x.dtype, shape)

"""Small constant tensors made once per device instead of once per call.

On a GPU ``torch.tensor(values, device="cuda")`` is a host→device copy, which also waits
for the stream; the hot paths need a few such constants in every step (the quaternion →
matrix map of :mod:`protein_care.geometry`, the trainer's rotation index, the vision
augmentation's weights, offsets, bounds and row indices), so they are built once per
(key, device) and reused. Under
``torch.compile`` they are built inside the traced graph instead (a constant there).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

_CACHE: dict[tuple, Tensor] = {}
_MAX_ENTRIES = 256  # a handful per config and batch shape; cleared if it ever grows past this


def cached_tensor(key: tuple, device, build: Callable[[torch.device], Tensor]) -> Tensor:
    """``build(device)`` once per ``(key, device)``, then the same tensor. ``key`` must
    determine the values; callers must not modify the result in place."""
    device = torch.device("cpu") if device is None else torch.device(device)
    if torch.compiler.is_compiling():
        return build(device)
    full_key = (*key, device)
    tensor = _CACHE.get(full_key)
    if tensor is None:
        if len(_CACHE) >= _MAX_ENTRIES:
            _CACHE.clear()
        tensor = _CACHE[full_key] = build(device)
    return tensor


def constant(values, device, dtype: torch.dtype = torch.float32, shape: tuple[int, ...] | None = None) -> Tensor:
    """``torch.tensor(values, dtype=dtype)`` (viewed as ``shape``) on ``device``, cached;
    ``values`` is a (nested) tuple of numbers."""

    def build(dev):
        t = torch.tensor(values, dtype=dtype, device=dev)
        return t if shape is None else t.view(shape)

    return cached_tensor(("constant", values, dtype, shape), device, build)

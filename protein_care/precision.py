"""The loss core's precision: Gram matrices and logits in float32 or wider, whatever the
dtype of the embeddings and whatever autocast region the caller is in.

16-bit floats keep 8 (bfloat16) or 11 (float16) significant bits. In bfloat16, an
InfoNCE of about 6.3 is rounded to a multiple of 1/32, so λ·L_equi ≈ 0.005 added to it
vanishes from the logged loss. A logit s/τ near 10 (MoCo's τ = 0.1) is kept only to a
multiple of 1/16. And the Gram-matrix differences that L_equi squares are of the size of
the rounding itself once the encoder is nearly equivariant.

The image benchmarks run their whole training step, loss included, under bf16 autocast
(``run.amp``; their augmentation switches it off for itself). There, casting the embeddings to float32 is not enough: autocast casts a
float32 matrix product back to bfloat16. :func:`full_precision` therefore turns autocast
off for the loss, and :func:`compute_dtype` casts 16-bit inputs up.

The embeddings themselves come out of the encoder's last layer: under autocast that
layer and the L2 normalisation would round every z to bf16 (row norms off by up to
2e-3), a floor of ~1e-4 under L_equi where float32 gives 2e-9 (protein DeepSet at
initialisation, CPU bf16 autocast). :func:`full_precision_head` therefore runs the
projection head (and the normalisation) in float32 too; the trunk's activations may stay
16-bit (rounding them moved L_equi by 3e-11 in the same measurement).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def compute_dtype(z: Tensor) -> torch.dtype:
    """float32 for half/bfloat16 inputs (Gram matrices and logits overflow or lose
    precision in 16 bits), otherwise the input's own dtype (float32 or float64)."""
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def full_precision(loss_fn):
    """Decorate a loss function so that it runs with autocast off on the device of its
    first tensor argument; its arithmetic is then in the dtypes it chooses
    (:func:`compute_dtype`). Gradients still flow to the 16-bit embeddings."""

    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        first = next((a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), None)
        if first is None or not torch.is_autocast_enabled(first.device.type):
            return loss_fn(*args, **kwargs)
        with torch.autocast(first.device.type, enabled=False):
            return loss_fn(*args, **kwargs)

    return wrapper


@full_precision
def full_precision_head(head, h: Tensor, *, normalize: bool = True) -> Tensor:
    """``head(h)``, L2-normalised along dim 1 unless ``normalize=False``, computed outside
    autocast in :func:`compute_dtype` (float32 for 16-bit ``h``)."""
    z = head(h.to(compute_dtype(h)))
    return torch.nn.functional.normalize(z, dim=1) if normalize else z

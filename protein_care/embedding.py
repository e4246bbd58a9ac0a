"""Embedding clouds with a frozen encoder: centre, rotate about the centroid, scale by
the run's global length scale, batch without padding, and run the encoder in eval mode
without gradients.

    >>> run = load_run("runs/care")                                  # doctest: +SKIP
    >>> z = embed_clouds(run.encoder, coords, features, length_scale=run.config["length_scale"])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from protein_care.augment import center_and_scale, rotate_per_cloud
from protein_care.models import model_config


def _as_tensor(a, dtype, device) -> Tensor:
    if isinstance(a, Tensor):
        return a.to(device=device, dtype=dtype)
    return torch.tensor(np.asarray(a), device=device).to(dtype)  # a copy: store arrays are read-only


def pack_clouds(
    coords: Sequence, features: Sequence | None = None, *, device="cpu"
) -> tuple[Tensor, Tensor | None, Tensor, int]:
    """Concatenate clouds as a PyG batch would: ``pos`` (N, 3) float32, ``x`` (N,) long
    or None, ``batch`` (N,) long, and the number of clouds."""
    if features is not None and len(features) != len(coords):
        raise ValueError(f"features has {len(features)} entries for {len(coords)} clouds")
    pos_list = [_as_tensor(c, torch.float32, device).reshape(-1, 3) for c in coords]
    sizes = torch.tensor([p.shape[0] for p in pos_list], device=device, dtype=torch.long)
    pos = torch.cat(pos_list) if pos_list else torch.zeros(0, 3, device=device)
    batch = torch.repeat_interleave(torch.arange(len(pos_list), device=device), sizes)
    x = None
    if features is not None:
        x = torch.cat([_as_tensor(f, torch.long, device).reshape(-1) for f in features])
        if x.numel() != pos.shape[0]:
            raise ValueError(f"features hold {x.numel()} codes for {pos.shape[0]} points")
    return pos, x, batch, len(pos_list)


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _prepare_encoder(encoder: nn.Module, features, batch_size: int, device, features_hint: str) -> tuple[bool, torch.device]:
    """Check ``batch_size`` and that ``features`` are given when the encoder uses residue
    types, and move the encoder to ``device``. Returns (uses residue features, device)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    uses_features = getattr(encoder, "uses_residue_features", False)
    if uses_features and features is None:
        raise ValueError(f"this encoder uses residue-type features: pass features ({features_hint})")
    device = torch.device(device)
    if _device_of(encoder) != device:
        encoder.to(device)
    return uses_features, device


@torch.no_grad()
def _embed_batch(encoder, pos, x, batch, num_graphs, length_scale, rotations) -> Tensor:
    pos = center_and_scale(pos, batch, num_graphs, length_scale)
    if rotations is not None:
        pos = rotate_per_cloud(pos, batch, rotations)
    return encoder(pos, x, batch, num_graphs).float()


def embed_clouds(
    encoder: nn.Module,
    coords: Sequence,
    features: Sequence | None = None,
    *,
    length_scale: float,
    rotations: Tensor | None = None,
    batch_size: int = 256,
    device="cpu",
) -> Tensor:
    """Embeddings ``(B, dim)`` (float32, on the CPU) of ``B`` clouds.

    Each cloud ``coords[i]`` ((n_i, 3), Å) is centred on its centroid, rotated by
    ``rotations[i]`` (about the centroid; ``x' = R x``) when given, divided by
    ``length_scale`` (the run's ``config["length_scale"]``), and batched ``batch_size``
    clouds at a time. ``features[i]`` are the residue-type codes, needed when the encoder
    uses them (ignored otherwise). The encoder is moved to ``device`` and run in eval
    mode under ``torch.no_grad``; its training flag is restored afterwards.
    """
    if rotations is not None and rotations.shape != (len(coords), 3, 3):
        raise ValueError(f"rotations must be ({len(coords)}, 3, 3), got {tuple(rotations.shape)}")
    uses_features, device = _prepare_encoder(encoder, features, batch_size, device, "one code array per cloud")
    was_training = encoder.training
    encoder.eval()
    try:
        out = []
        for start in range(0, len(coords), batch_size):
            stop = min(start + batch_size, len(coords))
            feats = features[start:stop] if uses_features else None
            pos, x, batch, b = pack_clouds(coords[start:stop], feats, device=device)
            rot = rotations[start:stop] if rotations is not None else None
            out.append(_embed_batch(encoder, pos, x, batch, b, length_scale, rot).cpu())
        dim = getattr(encoder, "dim", 0)
        return torch.cat(out) if out else torch.zeros(0, dim)
    finally:
        encoder.train(was_training)


#: Point × channel units of one batch of rotated copies (per-point activations; about 8
#: bytes per unit at peak on CPU, so about 0.5 GB).
POINT_BUDGET = 2**26
#: heads × n² units of one set-transformer batch (its attention weights).
ATTENTION_BUDGET = 2**26


def _channels(config: dict) -> int:
    width = int(config["hidden"])
    if config["embedding"] == "split" and config["split_trunks"] == "separate":
        width *= 2  # two trunks
    return width


def clouds_per_batch(config: dict, n: int) -> int:
    """Rotated copies of an ``n``-point cloud that one batch of the encoder described by
    ``config`` may hold within :data:`POINT_BUDGET` (and, for the set transformer, whose
    attention grows with n², :data:`ATTENTION_BUDGET`); 0: not even one."""
    config, n = model_config(config), max(1, int(n))
    fits = POINT_BUDGET // (n * _channels(config))
    if config["encoder"] == "set-transformer":
        fits = min(fits, ATTENTION_BUDGET // (int(config["heads"]) * n * n))
    return int(fits)


def largest_cloud(config: dict) -> int:
    """The most points one cloud may have for one copy to fit :func:`clouds_per_batch`."""
    config = model_config(config)
    most = POINT_BUDGET // _channels(config)
    if config["encoder"] == "set-transformer":
        most = min(most, math.isqrt(ATTENTION_BUDGET // int(config["heads"])))
    return int(most)


def embed_rotation_series(
    encoder: nn.Module,
    coords,
    features=None,
    rotations: Tensor | None = None,
    *,
    length_scale: float,
    batch_size: int = 256,
    device="cpu",
) -> Tensor:
    """Embeddings ``(S, dim)`` of ONE cloud ``coords`` ((n, 3), Å) under each of the
    rotations ``(S, 3, 3)`` about its centroid (trajectories, the app). The cloud is
    centred once and replicated on the device, not re-packed per rotation."""
    if rotations is None or rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
        raise ValueError("rotations must be (S, 3, 3)")
    uses_features, device = _prepare_encoder(encoder, features, batch_size, device, "the cloud's code array")
    pos1 = _as_tensor(coords, torch.float32, device).reshape(-1, 3)
    pos1 = (pos1 - pos1.mean(dim=0, keepdim=True)) / length_scale
    x1 = _as_tensor(features, torch.long, device).reshape(-1) if uses_features else None
    n = pos1.shape[0]
    # within the memory budget whatever the cloud's size (at least one copy per batch)
    batch_size = max(1, min(batch_size, clouds_per_batch(getattr(encoder, "config", {}), n)))
    was_training = encoder.training
    encoder.eval()
    try:
        out = []
        with torch.no_grad():
            for start in range(0, rotations.shape[0], batch_size):
                rot = rotations[start:start + batch_size].to(device=device, dtype=torch.float32)
                s = rot.shape[0]
                pos = torch.einsum("sij,nj->sni", rot, pos1).reshape(s * n, 3)
                batch = torch.arange(s, device=device).repeat_interleave(n)
                x = x1.repeat(s) if x1 is not None else None
                out.append(encoder(pos, x, batch, s).float().cpu())
        return torch.cat(out)
    finally:
        encoder.train(was_training)

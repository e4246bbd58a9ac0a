"""DistributedDataParallel for ``vision-benchmarks pretrain`` under ``torchrun``.

``torchrun --nproc_per_node N -m vision_benchmarks.cli pretrain ...`` (or the
``vision-benchmarks`` script in place of ``-m vision_benchmarks.cli``) sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`setup` then joins a process group
(NCCL on CUDA, gloo on CPU) and puts rank r on ``cuda:LOCAL_RANK``. Without those
variables everything stays in one process.

Semantics (``optim.batch_size`` B and ``method.equiv_batch_size`` E are *global*):

- every rank holds the whole uint8 data set on its device and draws the same epoch
  permutation π (same seed); rank r takes ``π[r : N' : W]`` with N' = ⌊N/W⌋·W, as
  ``DistributedSampler(shuffle=True, drop_last=True)``, in steps of B/W images
  (:func:`shard_batches`);
- each rank forms its own equivariance chunks from its own images (the release's
  per-GPU splits, ``--equiv-splits-per-gpu``): ``n_split/W`` chunks of E/W images, so
  every chunk has E/n_split images as in a one-process run and L_equi (which sums over
  a chunk) keeps its scale;
- augmentation parameters come from a per-rank generator seeded ``run.seed + 1 + r``;
- DDP averages the gradients: Σ_r ∇L_r / W; InfoNCE negatives are the rank's own
  batch (no all-gather), as the release. MoCo's queue takes the keys of all ranks.
"""

from __future__ import annotations


import torch
import torch.distributed as dist
from torch import Tensor, nn

from protein_care.distributed import DistContext, barrier, setup, teardown, wrap_ddp  # noqa: F401  (re-exported)


def local_sizes(cfg: dict, world_size: int) -> dict:
    """Per-rank ``batch_size``, ``equiv_batch_size`` and ``n_split`` from the global ones
    (see the module docstring); raises ``ValueError`` when W does not divide them."""
    batch, m = cfg["optim"]["batch_size"], cfg["method"]
    equiv = m["equiv_batch_size"] or batch
    for name, value in (("optim.batch_size", batch), ("method.equiv_batch_size", equiv),
                        ("method.n_split", m["n_split"])):
        if value % world_size:
            raise ValueError(f"{name}={value} is not divisible by the {world_size} processes of torchrun")
    return {"batch_size": batch // world_size,
            "equiv_batch_size": equiv // world_size if m["equiv_batch_size"] else 0,
            "n_split": m["n_split"] // world_size}


def shard_batches(order: Tensor, batch: int, rank: int = 0, world_size: int = 1) -> Tensor:
    """``(steps, batch)`` indices of rank ``rank`` for one epoch of permutation ``order``:
    ``DistributedSampler(shuffle=True, drop_last=True)`` followed by a DataLoader with
    ``drop_last=True``. The shards of the ranks are disjoint; W = 1 gives the batches
    ``order[k·batch:(k+1)·batch]``."""
    per_rank = order.shape[0] // world_size
    shard = order[: per_rank * world_size][rank::world_size]
    steps = per_rank // batch
    return shard[: steps * batch].view(steps, batch)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``nn.SyncBatchNorm`` in place of every BatchNorm (``run.sync_bn``): the batch
    statistics of each forward pass are then those of the global batch. PyTorch
    implements it for CUDA only."""
    if device.type != "cuda":
        raise ValueError("run.sync_bn = true needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


@torch.no_grad()
def all_gather_cat(x: Tensor) -> Tensor:
    """The rows of ``x`` from every rank, concatenated in rank order (no gradient);
    ``x`` itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def gather_objects(obj, ctx: DistContext) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out

"""DistributedDataParallel set-up from ``torchrun``'s environment.

``protein-care train`` under ``torchrun --nproc-per-node K`` finds ``WORLD_SIZE`` > 1
and joins a process group (NCCL on CUDA, gloo on CPU); each rank takes its shard of
every epoch (see :func:`protein_care.training.data.epoch_batches`), forms its own
equivariance chunks, and DDP averages the gradients. InfoNCE negatives are the rank's
own batch (no all-gather). Without those variables everything runs in one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from protein_care.distributed import DistContext, barrier, setup, teardown, wrap_ddp  # noqa: F401  (re-exported)


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks stop together)."""
    if not ctx.distributed:
        return flag
    device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_buffers(model: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP does this
    at the start of each forward; after the last step the ranks' statistics differ by
    their own last update until this is called."""
    if ctx.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


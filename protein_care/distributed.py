"""Joining the process group that ``torchrun`` describes, for any trainer (torch only).

``protein-care train`` and ``vision-benchmarks pretrain`` both call :func:`setup`: with
``WORLD_SIZE`` > 1 in the environment the process joins a group (NCCL on CUDA, gloo on
CPU) and rank r runs on ``cuda:LOCAL_RANK``; otherwise everything stays in one process.
Both wrap their model with :func:`wrap_ddp`. What each trainer does with its rank
(sharding, chunks) lives with that trainer.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from protein_care.devices import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` on ``device``; ``owner``
    says whether :func:`setup` created the process group (and :func:`teardown` ends it)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owner: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_name: str = "auto", flag: str = "--device {}") -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (if any);
    ``flag`` names the device option in errors (:func:`resolve_device`)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name, flag)
    if world_size <= 1:
        return DistContext(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank,
                                world_size=world_size)
    return DistContext(rank, world_size, device, owner)


def teardown(ctx: DistContext) -> None:
    """Leave the process group :func:`setup` joined. On a clean exit (no exception in
    flight) the ranks first meet at a barrier: a rank that destroys its group and exits
    while another is still finishing (rank 0 writes the run's files last) can abort that
    rank's own teardown (seen once as SIGABRT with gloo)."""
    if ctx.owner and dist.is_initialized():
        if sys.exc_info()[0] is None:
            barrier(ctx)
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def wrap_ddp(module: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` on the process's device; ``module`` itself when
    not distributed. DDP broadcasts rank 0's buffers (BatchNorm running statistics) at
    every forward (its default), so all ranks evaluate with rank 0's statistics."""
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)

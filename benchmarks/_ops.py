"""What a piece of code costs besides its wall time (shared by the benchmarks): the tensor
ops it dispatches, the floating-point operations it does, and how long the GPU computes.

On a GPU every dispatched op costs roughly 10 µs of host time whatever its size, so for
small tensors (32-px images, a batch of protein clouds) the op count, not the
arithmetic, predicts the cost; it is the same on any device, so a CPU run measures it.
The FLOP count is the same on any device too; over a step's wall time it gives the
achieved TFLOP/s. The GPU's busy time (its kernels' summed durations) over the wall time
says whether a step is bound by the GPU's arithmetic (near 100 %) or by the host that
launches the kernels (well below).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_ops(fn) -> int:
    """Top-level ``aten::`` ops that one call of ``fn()`` dispatches (torch.profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.cpu_parent is None and event.name.startswith("aten::"))


def count_flops(fn) -> int:
    """Floating-point operations of one call of ``fn()``, forward and backward, as
    ``torch.utils.flop_counter`` counts them (matrix products and convolutions, 2 per
    multiply-add; normalisation and element-wise ops are not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def device_busy_ms(fn, device: torch.device, repeats: int = 3) -> float | None:
    """Mean milliseconds per call of ``fn()`` during which the GPU runs kernels or copies
    (the summed durations of the CUDA events torch.profiler records, over ``repeats``
    calls after one untimed call); ``None`` off CUDA. ``fn`` must synchronise."""
    if torch.device(device).type != "cuda":
        return None
    fn()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(repeats):
            fn()
    busy_us = sum(event.time_range.elapsed_us() for event in prof.events()
                  if event.device_type == torch.autograd.DeviceType.CUDA)
    return busy_us / repeats / 1e3


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize()

"""Counting the tensor ops a piece of code dispatches (shared by the benchmarks).

On a GPU every dispatched op costs roughly 10 µs of host time whatever its size, so for
small tensors (32-px images, a batch of protein clouds) the op count, not the
arithmetic, predicts the cost; it is the same on any device, so a CPU run measures it.
"""

from __future__ import annotations

import torch


def count_ops(fn) -> int:
    """Top-level ``aten::`` ops that one call of ``fn()`` dispatches (torch.profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.cpu_parent is None and event.name.startswith("aten::"))

"""One rank of ``vision-benchmarks pretrain`` under torchrun, with every training step traced.

    torchrun --nproc-per-node 2 tests/vision_benchmarks/ddp_worker.py TRACE_DIR pretrain --config ... --out RUN

Runs the CLI unchanged except that ``SimCLR.step``/``MoCo.step`` are wrapped to record,
before each step: the rank-local uint8 batch, the augmentation generator's state, the
global RNG state (MoCo's key shuffle), and the method's state (weights, buffers, queue);
after it, the loss parts. After training the final state is added, and everything is
saved to ``TRACE_DIR/trace_rank{RANK}.pt`` (test_distributed.py reads it).
"""

from __future__ import annotations

import os
import sys

import torch

from vision_benchmarks import methods
from vision_benchmarks.cli import main

TRACE: dict = {"steps": [], "method": None}


def _clone_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _traced(original):
    def step(self, x, augment, generator=None, channels_last=False):
        TRACE["method"] = self
        record = {"x": x.clone(), "augment_state": generator.get_state(), "rng_state": torch.get_rng_state(),
                  "state": _clone_state(self)}
        parts = original(self, x, augment, generator, channels_last)
        record["parts"] = {k: v.detach().clone() for k, v in parts.items()}
        TRACE["steps"].append(record)
        return parts

    return step


if __name__ == "__main__":
    trace_dir, argv = sys.argv[1], sys.argv[2:]
    methods.MoCo.step = _traced(methods.MoCo.step)
    methods.SimCLR.step = _traced(methods.SimCLR.step)
    code = main(argv)
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "steps": TRACE["steps"],
                "final": _clone_state(TRACE["method"])}, os.path.join(trace_dir, f"trace_rank{rank}.pt"))
    sys.exit(code)

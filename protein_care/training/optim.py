"""AdamW with a linear warm-up and a cosine decay, stepped once per optimizer step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """The learning-rate factor after ``step`` scheduler steps: linear from 1/warmup to 1
    over ``warmup_steps``, then cosine from 1 down to ``min_lr_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, config: dict):
    """AdamW (``lr``, ``weight_decay``; no decay on biases, norms and embeddings' 1-D
    parameters) and its LambdaLR warm-up/cosine schedule."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config["lr"],
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine(
            step, warmup_steps=config["warmup_steps"], total_steps=config["total_steps"], min_lr_ratio=config["min_lr_ratio"]
        ),
    )
    return optimizer, scheduler

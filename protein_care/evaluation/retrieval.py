"""Rotation retrieval: does a cloud under one rotation find itself under another?"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def retrieval_top1(queries: Tensor, keys: Tensor, *, tie_tolerance: float = 1e-7) -> float:
    """Top-1 retrieval by cosine similarity: the fraction of rows i of ``queries`` whose
    most similar row of ``keys`` is row i (both ``(n, d)``, row i = the same cloud under
    two different rotations).

    Ties are broken at random in expectation: a query whose own key shares the top
    similarity with k − 1 others (within ``tie_tolerance``) counts 1/k. A constant
    encoder therefore scores exactly the chance level 1/n.
    """
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(f"queries and keys must both be (n, d), got {tuple(queries.shape)} and {tuple(keys.shape)}")
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    k = torch.nn.functional.normalize(keys.double(), dim=1)
    sim = q @ k.T  # (n, n)
    own = sim.diagonal()
    top = sim.max(dim=1).values
    hit = own >= top - tie_tolerance
    n_top = (sim >= top[:, None] - tie_tolerance).sum(dim=1)
    credit = torch.where(hit, 1.0 / n_top.double(), torch.zeros_like(own))
    return float(credit.mean())


def retrieval_chance(n: int) -> float:
    """Chance level of :func:`retrieval_top1` among n clouds."""
    return 1.0 / n if n > 0 else float("nan")


def mean_retrieval(pairs: list[tuple[Tensor, Tensor]]) -> float:
    """Mean of :func:`retrieval_top1` over several (queries, keys) draws."""
    return float(np.mean([retrieval_top1(q, k) for q, k in pairs]))

"""How many rotated copies of one cloud an encoder batch may hold, so that the app's
memory stays bounded whatever the cloud size.

A trajectory embeds one cloud under every rotation of the turn; the copies are batched.
Per-point encoders (deepset, pointnet) hold a few ``(points, hidden)`` activations per
batch; the set transformer also holds ``heads × n²`` attention weights per cloud. Both
are budgeted (measured on CPU: about 8 bytes per budget unit at peak, so each budget is
about 0.5 GB). A cloud whose single copy is over a budget is refused with a message.
"""

from __future__ import annotations

import math

from apps.trajectory_explorer.inputs import ExplorerError

#: Point × channel units of one batch (per-point activations).
POINT_BUDGET = 2**26
#: heads × n² units of one set-transformer batch (attention weights).
ATTENTION_BUDGET = 2**26


def _channels(config: dict) -> int:
    width = max(1, int(config.get("hidden") or 1))
    if config.get("embedding") == "split" and config.get("split_trunks", "separate") == "separate":
        width *= 2  # two trunks
    return width


def _attention(config: dict) -> bool:
    return config.get("encoder") == "set-transformer"


def clouds_per_batch(config: dict, n: int) -> int:
    """Copies of an ``n``-point cloud that fit one batch of the run with ``config``
    (0: not even one)."""
    n = max(1, int(n))
    fits = POINT_BUDGET // (n * _channels(config))
    if _attention(config):
        fits = min(fits, ATTENTION_BUDGET // (max(1, int(config.get("heads") or 1)) * n * n))
    return int(fits)


def largest_cloud(config: dict) -> int:
    """The most points one cloud may have for the run with ``config``."""
    most = POINT_BUDGET // _channels(config)
    if _attention(config):
        most = min(most, math.isqrt(ATTENTION_BUDGET // max(1, int(config.get("heads") or 1))))
    return int(most)


def batch_size(config: dict, n: int, label: str) -> int:
    """:func:`clouds_per_batch`, or :class:`ExplorerError` saying why the cloud is refused."""
    fits = clouds_per_batch(config, n)
    if fits < 1:
        encoder = config.get("encoder", "encoder")
        why = " (its attention grows with the square of the points)" if _attention(config) else ""
        raise ExplorerError(
            f"{label}: a {encoder} run{why} can embed at most {largest_cloud(config):,} points within the app's "
            f"memory budget, this protein has {n:,}; untick the run or choose a smaller protein"
        )
    return fits

"""The app's side of the memory budget of trajectories: the batches themselves are sized
by :func:`protein_care.embedding.clouds_per_batch` (per-point activations, and the set
transformer's ``heads × n²`` attention weights; about 0.5 GB each); a cloud whose single
copy is over the budget is refused here with a message, instead of embedded anyway.
"""

from __future__ import annotations

from apps.trajectory_explorer.inputs import ExplorerError
from protein_care.embedding import clouds_per_batch, largest_cloud
from protein_care.models import model_config


def check_fits(config: dict, n: int, label: str) -> None:
    """:class:`ExplorerError` saying why, when not one copy of an ``n``-point cloud fits the
    budget (:func:`clouds_per_batch` is 0); the library sizes the batches itself."""
    if clouds_per_batch(config, n) < 1:
        encoder = model_config(config)["encoder"]
        why = " (its attention grows with the square of the points)" if encoder == "set-transformer" else ""
        raise ExplorerError(
            f"{label}: a {encoder} run{why} can embed at most {largest_cloud(config):,} points within the app's "
            f"memory budget, this protein has {n:,}; untick the run or choose a smaller protein"
        )

r"""Permutation-invariant set encoders of point clouds onto the unit sphere.

One architecture, three aggregations (the encoders differ only in how points are
pooled, as in PyG's ``DeepSetsAggregation`` design):

.. math::
    f(X) = \frac{W\,\rho\big(\mathrm{AGG}_{i \in X}\ \phi(u(p_i, t_i))\big)}
                {\lVert W\,\rho(\cdot)\rVert}

with ``u`` the per-point input (:class:`~protein_care.models.features.PointFeatures`:
coordinates centred on the cloud's centroid and divided by one global length scale,
optionally their quadratic monomials and a residue-type embedding), φ a per-point MLP,
AGG a torch-geometric aggregation over the points of each cloud, ρ an MLP and ``W`` a
linear projection to ``dim``.

- ``deepset`` (Zaheer et al. 2017): AGG = mean (``--pool`` picks mean, sum, max or mean+max).
- ``set-transformer`` (Lee et al. 2019): AGG = PyG ``SetTransformerAggregation``
  (self-attention blocks over the points of each cloud, then pooling by attention to one
  seed; cost grows with the square of the cloud size).
- ``pointnet`` (Qi et al. 2017): AGG = max.

Inputs are PyG batches as they are (``pos`` [N, 3], ``x`` [N], ``batch`` [N], sorted by
cloud): no padding in this interface.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.nn import aggr

from protein_care.models.features import PointFeatures
from protein_care.options import EMBEDDINGS, ENCODERS, MODEL_DEFAULTS, NORMS, POOLS, SPLIT_TRUNKS
from protein_care.precision import full_precision_head



def mlp(channels: list[int], *, final_activation: bool = True) -> nn.Sequential:
    """Linear layers of the given widths with SiLU between them (and after the last
    when ``final_activation``)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or k < len(channels) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def make_aggregation(encoder: str, pool: str, hidden: int, heads: int = 4, blocks: int = 1) -> tuple[aggr.Aggregation, int]:
    """The aggregation module of ``encoder`` and the width of its output."""
    if encoder == "set-transformer":
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads} for the set transformer")
        module = aggr.SetTransformerAggregation(
            hidden, num_seed_points=1, num_encoder_blocks=blocks, num_decoder_blocks=1, heads=heads, layer_norm=True,
        )
        return module, hidden
    if encoder == "pointnet":
        return aggr.MaxAggregation(), hidden
    if encoder != "deepset":
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if pool == "mean+max":
        return aggr.MultiAggregation(["mean", "max"]), 2 * hidden
    return {"mean": aggr.MeanAggregation, "sum": aggr.SumAggregation, "max": aggr.MaxAggregation}[pool](), hidden


class Encoder(nn.Module):
    """Base of the encoders: ``forward(pos, x, batch, num_graphs) -> (B, dim)`` with
    L2-normalised rows. ``config`` holds the architecture keys it was built from."""

    dim: int
    config: dict

    @property
    def uses_residue_features(self) -> bool:
        return self.trunk.features.uses_residue_features  # type: ignore[attr-defined]


class SetTrunk(nn.Module):
    """``ρ(AGG φ(u(p, t)))``: the shared part of the encoders, ``(N points) -> (B, width)``.

    Args:
        features: the per-point input module.
        phi: per-point network φ.
        aggregation: a torch-geometric aggregation over points by cloud index.
        rho: network ρ on the pooled vector.
        norm: optional module on the pooled vectors before ρ (``--norm batch``:
            ``BatchNorm1d``, which standardises the pooled features across the clouds of
            a batch; in eval mode it is a fixed affine map from running statistics).
    """

    def __init__(
        self,
        features: PointFeatures,
        phi: nn.Module,
        aggregation: aggr.Aggregation,
        rho: nn.Module,
        norm: nn.Module | None = None,
    ):
        super().__init__()
        self.features, self.phi, self.aggregation, self.rho = features, phi, aggregation, rho
        self.norm = norm if norm is not None else nn.Identity()

    def forward(self, pos: Tensor, x: Tensor | None, batch: Tensor, num_graphs: int, views: int = 1) -> Tensor:
        """``views`` > 1: the clouds are that many stacked views (view-major); in training
        a BatchNorm then takes each view's statistics apart, as separate forward passes
        would (the release's four passes). Eval mode uses running statistics either way."""
        h = self.phi(self.features(pos, x))  # (N, hidden)
        pooled = self.aggregation(h, batch, dim_size=num_graphs)  # (B, pool width)
        if views > 1 and self.training and isinstance(self.norm, nn.BatchNorm1d):
            return self.rho(torch.cat([self.norm(chunk) for chunk in pooled.chunk(views)]))
        return self.rho(self.norm(pooled))  # (B, hidden)


class SetEncoder(Encoder):
    """A set trunk and one linear projection to ``dim``, L2-normalised."""

    def __init__(self, trunk: SetTrunk, width: int, dim: int, config: dict | None = None):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(width, dim)
        self.dim = dim
        self.config = dict(config or {})

    def forward(self, pos: Tensor, x: Tensor | None, batch: Tensor, num_graphs: int, views: int = 1) -> Tensor:
        return full_precision_head(self.head, self.trunk(pos, x, batch, num_graphs, views))  # (B, dim), float32


class SplitEncoder(Encoder):
    r"""Two embedding blocks on one trunk (``--embedding split``).

    Block A (``dim/2``) is meant to be trained to be rotation-*invariant* (InfoNCE on
    views with independent Haar rotations); block B (``dim/2``) to carry the rotation
    (CARE on rotation-free invariance views, Haar rotations per chunk for the
    equivariance views). Each block is L2-normalised and the concatenation weighted by
    ``s = split_pose_weight``, the share of the squared norm given to the pose block:

    .. math:: z = [\sqrt{1-s}\, z_A;\ \sqrt{s}\, z_B], \qquad
              \cos(z, z') = (1-s)\cos(z_A, z_A') + s\cos(z_B, z_B').

    The whole embedding has unit norm. A small s (default 0.01) lets the invariant block
    decide which protein a cloud is (cosine retrieval), while the pose block still holds
    the rotation for any linear read-out (a linear probe is blind to the scale); s = ½
    weighs both blocks alike. The losses act on each unit block, so s does not change
    training, only the concatenated embedding.

    ``trunk_b`` given (``split_trunks="separate"``, the default): each block has its own
    φ/pool/ρ trunk, so the invariance of block A and the pose of block B do not compete
    for one set of features; ``None``: one shared trunk.
    """

    def __init__(self, trunk: SetTrunk, width: int, dim: int, config: dict | None = None,
                 trunk_b: SetTrunk | None = None):
        super().__init__()
        if dim % 2:
            raise ValueError(f"--embedding split needs an even dim, got {dim}")
        self.trunk = trunk
        self.trunk_b = trunk_b
        self.head_a = nn.Linear(width, dim // 2)
        self.head_b = nn.Linear(width, dim // 2)
        self.dim = dim
        self.config = dict(config or {})
        self.pose_weight = float(self.config.get("split_pose_weight", MODEL_DEFAULTS["split_pose_weight"]))
        if not 0.0 < self.pose_weight < 1.0:
            raise ValueError(f"split_pose_weight must be in (0, 1), got {self.pose_weight!r}")

    def forward(self, pos: Tensor, x: Tensor | None, batch: Tensor, num_graphs: int, *, blocks: bool = False,
                split_at: int | None = None, views: int = 1):
        """``(B, dim)`` unit rows, or with ``blocks=True`` the two unit blocks
        ``(z_A, z_B)``, each ``(B, dim/2)``. With ``split_at=k`` (training) block A is
        computed for clouds ``0..k-1`` only and block B for clouds ``k..B-1`` only
        (the stacked views of each block), returning ``(z_A [k], z_B [B-k])``.
        ``views``: the clouds are that many stacked views of equal size (see
        :meth:`SetTrunk.forward`)."""
        if split_at is not None:
            return self._blocks_of_parts(pos, x, batch, num_graphs, split_at, views)
        h = self.trunk(pos, x, batch, num_graphs, views)
        h_b = h if self.trunk_b is None else self.trunk_b(pos, x, batch, num_graphs, views)
        z_a = full_precision_head(self.head_a, h)  # (B, dim/2), invariant block
        z_b = full_precision_head(self.head_b, h_b)  # (B, dim/2), equivariant block
        if blocks:
            return z_a, z_b
        s = self.pose_weight
        return torch.cat([math.sqrt(1.0 - s) * z_a, math.sqrt(s) * z_b], dim=1)

    def _blocks_of_parts(self, pos, x, batch, num_graphs: int, split_at: int, views: int = 1):
        if self.trunk_b is None:  # one trunk over all clouds
            h = self.trunk(pos, x, batch, num_graphs, views)
            return full_precision_head(self.head_a, h[:split_at]), full_precision_head(self.head_b, h[split_at:])
        first = batch < split_at  # clouds are stacked in order, so this is a prefix of the points
        x_a, x_b = (None, None) if x is None else (x[first], x[~first])
        views_a = views * split_at // num_graphs if views > 1 else 1  # the views each block holds
        h_a = self.trunk(pos[first], x_a, batch[first], split_at, views_a)
        h_b = self.trunk_b(pos[~first], x_b, batch[~first] - split_at, num_graphs - split_at, max(1, views - views_a))
        return full_precision_head(self.head_a, h_a), full_precision_head(self.head_b, h_b)




def model_config(config: dict) -> dict:
    """The architecture keys of ``config`` with defaults filled in."""
    return {key: config.get(key, default) for key, default in MODEL_DEFAULTS.items()}


def build_encoder(config: dict) -> Encoder:
    """The encoder a run config describes (missing keys take :data:`MODEL_DEFAULTS`).

    Keys: ``encoder`` (deepset | set-transformer | pointnet), ``dim``, ``hidden``,
    ``phi_layers``, ``rho_layers``, ``pool`` (deepset only), ``point_features``
    (xyz | xyz+quadratic), ``use_residue_features``, ``num_residue_types``,
    ``residue_embedding_dim``, ``heads`` and ``set_transformer_blocks`` (set-transformer),
    ``embedding`` (single | split), ``norm`` (batch | none: normalisation of the pooled
    vectors). Parameters are drawn from torch's global RNG; see
    :func:`protein_care.runs.initial_encoder` for the seeded construction.
    """
    cfg = model_config(config)
    if cfg["embedding"] not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {cfg['embedding']!r}")
    for key in ("dim", "hidden", "phi_layers", "rho_layers"):
        if int(cfg[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]!r}")
    hidden = int(cfg["hidden"])
    def make_trunk() -> SetTrunk:
        features = PointFeatures(
            cfg["point_features"],
            int(cfg["num_residue_types"]) if cfg["use_residue_features"] else 0,
            int(cfg["residue_embedding_dim"]),
        )
        phi = mlp([features.out_channels] + [hidden] * int(cfg["phi_layers"]))
        aggregation, pooled = make_aggregation(
            cfg["encoder"], cfg["pool"], hidden, int(cfg["heads"]), int(cfg["set_transformer_blocks"])
        )
        rho = mlp([pooled] + [hidden] * int(cfg["rho_layers"]))
        if cfg["norm"] not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {cfg['norm']!r}")
        norm = nn.BatchNorm1d(pooled) if cfg["norm"] == "batch" else None
        return SetTrunk(features, phi, aggregation, rho, norm)

    if cfg["embedding"] == "split":
        if cfg["split_trunks"] not in SPLIT_TRUNKS:
            raise ValueError(f"split_trunks must be one of {SPLIT_TRUNKS}, got {cfg['split_trunks']!r}")
        trunk = make_trunk()
        trunk_b = make_trunk() if cfg["split_trunks"] == "separate" else None
        return SplitEncoder(trunk, hidden, int(cfg["dim"]), cfg, trunk_b=trunk_b)
    return SetEncoder(make_trunk(), hidden, int(cfg["dim"]), cfg)

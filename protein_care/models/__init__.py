"""Set encoders of protein point clouds: ``build_encoder(config) -> Encoder``.

An encoder maps a PyG batch (``pos`` [N, 3] centred and globally scaled, ``x`` [N]
residue codes or None, ``batch`` [N], ``num_graphs`` B) to ``(B, dim)`` unit rows.
"""

from protein_care.models.encoders import (
    EMBEDDINGS,
    ENCODERS,
    MODEL_DEFAULTS,
    NORMS,
    POOLS,
    Encoder,
    SetEncoder,
    SetTrunk,
    SplitEncoder,
    build_encoder,
    model_config,
)
from protein_care.models.features import POINT_FEATURES, PointFeatures, quadratic_monomials

__all__ = [
    "EMBEDDINGS",
    "ENCODERS",
    "MODEL_DEFAULTS",
    "NORMS",
    "POINT_FEATURES",
    "POOLS",
    "Encoder",
    "PointFeatures",
    "SetEncoder",
    "SetTrunk",
    "SplitEncoder",
    "build_encoder",
    "model_config",
    "quadratic_monomials",
]

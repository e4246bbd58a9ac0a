"""Evaluation of frozen encoders (``protein-care evaluate``).

- :mod:`~protein_care.evaluation.probes`: the PC1 probe (CARE §5.1, Fig. 2b).
- :mod:`~protein_care.evaluation.equivariance`: Wahba's error, γ_f, composition (CARE §4, Cor. 1).
- :mod:`~protein_care.evaluation.retrieval`: rotation retrieval.
- :mod:`~protein_care.evaluation.metrics_core`: every metric of one embedding function.
- :mod:`~protein_care.evaluation.evaluate`: a run + a store → the metrics JSON.
"""

from protein_care.evaluation.metrics_core import METRIC_KEYS, evaluate_embedder
from protein_care.evaluation.probes import PC1_CHANCE_DEG, RIDGE_LAMBDAS

__all__ = ["METRIC_KEYS", "PC1_CHANCE_DEG", "RIDGE_LAMBDAS", "evaluate_embedder"]

"""protein-care: CARE (Contrastive Augmentation-induced Rotational Equivariance) for
protein structures.

The loss core (:mod:`protein_care.losses`), rotations and Wahba's problem
(:mod:`protein_care.geometry`) and equivariance metrics (:mod:`protein_care.metrics`)
depend on torch only; ``vision_benchmarks`` imports them too.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("protein-care")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

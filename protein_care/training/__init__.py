"""Training of the point-cloud encoders with CARE and its ablations.

- :mod:`~protein_care.training.config`: every value of a run, defaults and checks.
- :mod:`~protein_care.training.data`: packed clouds, fast batch gathering, data order.
- :mod:`~protein_care.training.trainer`: the loop (:func:`train`, :class:`Trainer`).
- :mod:`~protein_care.training.checkpoint`: atomic checkpoints and RNG states.
- :mod:`~protein_care.training.distributed`: DDP under torchrun.
- :mod:`~protein_care.training.optim`: AdamW with warm-up and cosine decay.
"""

from protein_care.training.config import DEFAULTS, TRAIN_DEFAULTS
from protein_care.training.trainer import Trainer, train

__all__ = ["DEFAULTS", "TRAIN_DEFAULTS", "Trainer", "train"]

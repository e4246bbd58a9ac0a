"""Names and defaults of the training and model options, without importing torch.

The CLI builds its parsers from these (so ``protein-care --help`` starts fast); the
modules that implement each option import their names from here, so every list has
one home. :data:`LOSS_NAMES` mirrors :data:`protein_care.losses.LOSS_VARIANTS`, the
table that decides what each objective sums (a test keeps the two equal).
"""

from __future__ import annotations

ENCODERS = ("deepset", "set-transformer", "pointnet")
POOLS = ("mean", "sum", "max", "mean+max")
NORMS = ("batch", "none")
EMBEDDINGS = ("single", "split")
SPLIT_TRUNKS = ("shared", "separate")
POINT_FEATURES = ("xyz", "xyz+quadratic")
INV_AUGMENTS = ("rotation", "small-rotation", "points", "posed-points")
NORMALIZATIONS = ("release", "pair_mean")
NORM_STATS = ("joint", "per-view")
LOSS_NAMES = ("care", "simclr", "inv", "unif", "equi-unif")

#: Architecture keys and their defaults (the run config holds these among its values).
MODEL_DEFAULTS: dict = {
    "encoder": "deepset",
    "dim": 128,
    "hidden": 256,
    "phi_layers": 3,
    "rho_layers": 2,
    "pool": "mean",
    "point_features": "xyz+quadratic",
    "use_residue_features": False,
    "num_residue_types": 21,
    "residue_embedding_dim": 16,
    "heads": 4,
    "set_transformer_blocks": 1,
    "embedding": "single",
    "split_pose_weight": 0.01,
    "split_trunks": "separate",
    "norm": "batch",
}


#: Training values and their defaults (``None``: derived, see :func:`derive`).
TRAIN_DEFAULTS: dict = {
    "store": None,
    "out": None,
    "split": "train",
    "loss": "care",
    "epochs": 20,
    "batch_size": 256,
    "n_split": 16,
    "lam": 0.01,
    "anti_invariance": 0.0,  # μ of the orbit-similarity penalty (not in the paper; 0: off)
    "temperature": 0.5,
    "normalization": "release",
    "norm_stats": "joint",  # BatchNorm statistics in training: over all stacked views, or per view (the release)
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "warmup_steps": None,  # 5% of the planned steps
    "min_lr_ratio": 0.0,
    "seed": 0,
    "device": "auto",
    "max_minutes": None,
    "max_steps": None,
    "resume": False,
    "inv_augment": None,  # rotation (single) / points (split: block B)
    "max_angle": 30.0,
    "jitter": 0.5,
    "keep_fraction": 0.8,
    "train_points": 0,  # at most this many random points per cloud in a training step (0: all)
    "view_window": None,  # steps whose views are made together (None: 1 on a CPU, up to 16 on CUDA)
    "length_scale": None,  # mean radius of gyration of the training clouds (Å)
    "checkpoint_every": 100,
    "log_every": 10,
    "snapshots": 4,
    "compile": False,
    "amp": True,
    "progress": True,
}

DEFAULTS: dict = {**TRAIN_DEFAULTS, **MODEL_DEFAULTS}

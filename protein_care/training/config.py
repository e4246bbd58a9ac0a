"""Every value of a training run in one dict: defaults, checks and derived values.

``RUN/config.json`` holds the CLI values (:data:`TRAIN_DEFAULTS` and the architecture
keys of :data:`protein_care.models.MODEL_DEFAULTS`) and the values derived from the data
(``length_scale``, ``num_residue_types``, ``store_path``, ``store_config_hash``,
``train_size``, ``world_size``, ``steps_per_epoch``, ``total_steps``, ``warmup_steps``,
``inv_augment``, ``snapshot_steps``, ``drop_last``, ``device_name``, ``versions``).

``batch_size`` is per process; ``n_split`` chunks are formed per process. The last
incomplete batch of an epoch is dropped, so every batch splits into whole chunks.
"""

from __future__ import annotations

import math

from protein_care.losses import LOSS_VARIANTS
from protein_care.options import (  # noqa: F401  (TRAIN_DEFAULTS, MODEL_DEFAULTS re-exported)
    DEFAULTS,
    EMBEDDINGS,
    ENCODERS,
    INV_AUGMENTS,
    MODEL_DEFAULTS,
    NORM_STATS,
    NORMALIZATIONS,
    NORMS,
    POINT_FEATURES,
    POOLS,
    SPLIT_TRUNKS,
    TRAIN_DEFAULTS,
)



#: Values that may change between a run and its ``--resume`` (they do not change the
#: arithmetic of a CPU run); every other value must match the checkpointed run.
RUNTIME_KEYS = frozenset(
    {"device", "max_minutes", "resume", "progress", "compile", "amp", "checkpoint_every", "log_every", "out", "store", "store_path", "device_name"}
)


#: Keys :func:`derive` computes; a saved ``config.json`` passed back in drops them.
DERIVED_KEYS = frozenset(
    {"train_size", "world_size", "steps_per_epoch", "total_steps", "drop_last", "snapshot_steps", "store_path",
     "store_config_hash", "versions", "device_name"}
)


def with_defaults(values: dict) -> dict:
    """``values`` over :data:`DEFAULTS` (a saved run config is accepted: its derived
    values are dropped and recomputed, and keys beginning with ``_`` are annotations,
    ignored); unknown keys are an error naming them."""
    values = {k: v for k, v in values.items() if k not in DERIVED_KEYS and not k.startswith("_")}
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown training settings: {unknown}")
    return {**DEFAULTS, **values}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def validate(config: dict) -> None:
    """Raise ``ValueError`` naming the argument for any value out of range."""
    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"{_flag(key)} {config[key]!r}: expected {expected}")

    need(config["loss"] in LOSS_VARIANTS, "loss", f"one of {sorted(LOSS_VARIANTS)}")
    need(config["encoder"] in ENCODERS, "encoder", f"one of {ENCODERS}")
    need(config["embedding"] in EMBEDDINGS, "embedding", f"one of {EMBEDDINGS}")
    need(config["point_features"] in POINT_FEATURES, "point_features", f"one of {POINT_FEATURES}")
    need(config["pool"] in POOLS, "pool", f"one of {POOLS}")
    need(config["norm"] in NORMS, "norm", f"one of {NORMS}")
    need(config["normalization"] in NORMALIZATIONS, "normalization", f"one of {NORMALIZATIONS}")
    need(config["norm_stats"] in NORM_STATS, "norm_stats", f"one of {NORM_STATS}")
    need(config["inv_augment"] in (None, *INV_AUGMENTS), "inv_augment", f"one of {INV_AUGMENTS}")
    for key, value in config.items():  # inf passes the range checks below, NaN fails them all unnamed
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{_flag(key)} {value!r}: expected a finite number")
    for key in ("epochs", "batch_size", "n_split", "dim", "hidden", "log_every", "checkpoint_every", "phi_layers",
                "rho_layers", "heads", "set_transformer_blocks", "residue_embedding_dim"):
        need(isinstance(config[key], int) and config[key] >= 1, key, "an integer >= 1")
    need(isinstance(config["snapshots"], int) and config["snapshots"] >= 0, "snapshots", "an integer >= 0")
    need(config["max_steps"] is None or config["max_steps"] >= 1, "max_steps", "an integer >= 1")
    need(config["max_minutes"] is None or config["max_minutes"] > 0, "max_minutes", "a positive number of minutes")
    need(config["warmup_steps"] is None or config["warmup_steps"] >= 0, "warmup_steps", "an integer >= 0")
    need(config["temperature"] > 0, "temperature", "a positive number")
    need(config["lam"] >= 0, "lam", "a number >= 0")
    need(config["anti_invariance"] >= 0, "anti_invariance", "a number >= 0")
    need(config["lr"] > 0, "lr", "a positive number")
    need(config["weight_decay"] >= 0, "weight_decay", "a number >= 0")
    need(0 <= config["min_lr_ratio"] <= 1, "min_lr_ratio", "a number in [0, 1]")
    need(0 < config["max_angle"] <= 180, "max_angle", "degrees in (0, 180]")
    need(config["jitter"] >= 0, "jitter", "Å >= 0")
    need(0 < config["keep_fraction"] <= 1, "keep_fraction", "a fraction in (0, 1]")
    need(isinstance(config["train_points"], int) and config["train_points"] >= 0, "train_points", "an integer >= 0")
    need(config["view_window"] is None or (isinstance(config["view_window"], int) and config["view_window"] >= 1),
         "view_window", "an integer >= 1")
    need(config["split_trunks"] in SPLIT_TRUNKS, "split_trunks", f"one of {SPLIT_TRUNKS}")
    need(0 < config["split_pose_weight"] < 1, "split_pose_weight", "a fraction in (0, 1)")
    need(config["length_scale"] is None or config["length_scale"] > 0, "length_scale", "a positive length in Å")
    if config["batch_size"] % config["n_split"]:
        raise ValueError(
            f"--n-split {config['n_split']} must divide --batch-size {config['batch_size']} "
            "(every chunk of the equivariance loss has the same size; the last incomplete batch is dropped)"
        )
    if config["batch_size"] // config["n_split"] < 2:
        raise ValueError(f"--batch-size {config['batch_size']} / --n-split {config['n_split']} leaves fewer than 2 clouds per chunk")
    if config["embedding"] == "split" and config["dim"] % 2:
        raise ValueError(f"--dim {config['dim']}: --embedding split needs an even dimension")


def no_batch_message(config: dict, train_size: int, world_size: int) -> str:
    """Why the training split fills no batch: too small for any batch (a batch holds at
    least 2 clouds per equivariance chunk, 2 × --n-split per process), or a --batch-size
    above what it fills (and the largest that fits)."""
    batch, n_split, split = config["batch_size"], config["n_split"], config["split"]
    smallest = 2 * n_split * world_size
    if train_size < smallest:
        fewer = (" (or lower --n-split: the smallest batch is 2 clouds × --n-split per process)"
                 if n_split > 1 and train_size >= 2 * world_size else "")
        return (f"split {split!r} has {train_size} cloud(s): too small to train on. A batch needs at least 2 clouds "
                f"per chunk × --n-split {n_split} × {world_size} process(es) = {smallest} clouds (--batch-size "
                f"{batch} needs {batch * world_size}); use a store with more clouds in {split!r} or another --split{fewer}")
    fits = (train_size // world_size) // n_split * n_split
    return (f"--batch-size {batch} × {world_size} process(es) is more than the {train_size} clouds of split "
            f"{split!r}: no full batch (lower --batch-size to at most {fits}, a multiple of --n-split {n_split})")


def derive(config: dict, *, train_size: int, world_size: int, length_scale: float, num_residue_types: int) -> dict:
    """Fill in the values that depend on the data and the launch."""
    from protein_care.training.data import steps_per_epoch

    out = dict(config)
    per_epoch = steps_per_epoch(train_size, out["batch_size"], world_size)
    if per_epoch < 1:
        raise ValueError(no_batch_message(out, train_size, world_size))
    total = per_epoch * out["epochs"]
    if out["max_steps"] is not None:
        total = min(total, int(out["max_steps"]))
    out.update(
        train_size=int(train_size),
        world_size=int(world_size),
        steps_per_epoch=per_epoch,
        total_steps=total,
        length_scale=float(out["length_scale"] if out["length_scale"] is not None else length_scale),
        num_residue_types=int(num_residue_types),
        drop_last=True,
    )
    if out["warmup_steps"] is None:
        out["warmup_steps"] = int(math.ceil(0.05 * total))
    if out["inv_augment"] is None:
        out["inv_augment"] = "points" if out["embedding"] == "split" else "rotation"
    k = out["snapshots"]
    out["snapshot_steps"] = sorted({max(1, round(total * (i + 1) / k)) for i in range(k)}) if k else []
    return out


#: Settings added after runs were first saved whose default does not reproduce what a
#: run saved without them did, with the value that does: before ``--view-window``
#: (commit 1924239) every step made its own views, i.e. a window of 1 (its default, None,
#: is resolved to 16 on CUDA). The other later settings' defaults are the old behaviour
#: (``norm_stats`` joint, ``train_points`` 0, ``anti_invariance`` 0).
LEGACY_VALUES = {"view_window": 1}


def saved_value(saved: dict, key: str):
    """``saved[key]``; for a key a run was saved without (added later) the value that
    reproduces the old behaviour (:data:`LEGACY_VALUES`), else its default."""
    return saved[key] if key in saved else LEGACY_VALUES.get(key, DEFAULTS.get(key))


def resume_mismatches(saved: dict, current: dict) -> list[str]:
    """Names of the values (other than :data:`RUNTIME_KEYS`) that differ, a key missing
    from ``saved`` taken as :func:`saved_value` gives it."""
    keys = (set(saved) | set(current)) - RUNTIME_KEYS - {"versions"}
    return sorted(k for k in keys if not k.startswith("_") and saved_value(saved, k) != current.get(k))


def describe_mismatches(saved: dict, current: dict) -> str:
    """:func:`resume_mismatches` with both values, ``key: run=X, now=Y`` joined by ``; ``
    (empty when none differ)."""
    def show(key: str) -> str:
        note = "" if key in saved else " (the run predates this setting)"
        return f"{key}: run={saved_value(saved, key)!r}, now={current.get(key)!r}{note}"

    return "; ".join(show(k) for k in resume_mismatches(saved, current))

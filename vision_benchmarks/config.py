"""Run configurations: TOML files merged over one table of defaults.

``configs/_base.toml`` holds every key a run may set (its sections are the schema) and
one ``[datasets.<name>]`` table per data set with the paper's hyperparameters. A run
config ``configs/<dataset>_<method>.toml`` names ``dataset = "..."`` and sets only what
differs (usually ``[method] framework/loss``). Merge order, later wins::

    base sections < datasets.<name> < datasets.<name>.framework.<fw> < run file < --set

``--set key=value`` takes a dotted key (``optim.epochs=10``) and a TOML value
(``10``, ``0.5``, ``"sgd"``, ``[0, 1]``; a bare word is read as a string). Unknown keys
and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any, Iterable

CONFIG_DIR = Path(__file__).with_name("configs")
BASE_FILE = CONFIG_DIR / "_base.toml"


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def _base() -> tuple[dict, dict]:
    with open(BASE_FILE, "rb") as f:
        base = tomllib.load(f)
    datasets = base.pop("datasets")
    return base, datasets


def _check_type(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{key}: expected {type(default).__name__} (like {default!r}), got {value!r}")
    return value


def _merge(target: dict, source: dict, schema: dict, where: str, prefix: str = "") -> None:
    """Merge ``source`` into ``target`` in place; every key must exist in ``schema``."""
    for key, value in source.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(f"{where}: unknown key {dotted!r}; known: {sorted(schema)}")
        if isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {dotted!r} must be a table")
            _merge(target[key], value, schema[key], where, dotted + ".")
        else:
            target[key] = _check_type(f"{where}: {dotted}", value, schema[key])


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.1"`` → (["optim", "lr"], 0.1); the value is read as TOML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. optim.epochs=10")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    return key.strip().split("."), value


def resolve_path(config: str | Path) -> Path:
    """A path, or a bare name (``cifar10_care``) of a shipped config."""
    path = Path(config)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{Path(config).stem}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(available_configs())
    raise ConfigError(f"config {str(config)!r} not found (neither a file nor one of: {names})")


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml") if not p.name.startswith("_"))


def load_config(config: str | Path, overrides: Iterable[str] = ()) -> dict:
    """The fully resolved configuration of a run (see the module docstring)."""
    path = resolve_path(config)
    base, datasets = _base()
    with open(path, "rb") as f:
        try:
            user = tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: {error}") from None
    dataset = user.pop("dataset", None)
    if dataset not in datasets:
        raise ConfigError(f"{path}: 'dataset' must be one of {sorted(datasets)}, got {dataset!r}")
    cfg = copy.deepcopy(base)
    table = copy.deepcopy(datasets[dataset])
    per_framework = table.pop("framework", {})
    _merge(cfg, table, base, f"_base.toml [datasets.{dataset}]")
    overrides = list(overrides)
    # the framework (and so its table) as the run file and --set leave it; a bad value
    # is refused below, where the file and the overrides are merged and validated
    method = user.get("method")
    framework = method.get("framework", cfg["method"]["framework"]) if isinstance(method, dict) else cfg["method"]["framework"]
    for text in overrides:
        keys, value = parse_override(text)
        if keys == ["method", "framework"]:
            framework = value
    table = per_framework.get(framework, {}) if isinstance(framework, str) else {}  # else refused below
    _merge(cfg, table, base, f"_base.toml [datasets.{dataset}.framework.{framework}]")
    _merge(cfg, user, base, str(path))
    apply_overrides(cfg, overrides, base)
    cfg["dataset"] = dataset
    cfg["config_file"] = path.name
    validate(cfg)
    return cfg


def apply_overrides(cfg: dict, overrides: Iterable[str], schema: dict | None = None) -> dict:
    """Apply ``--set key=value`` overrides to a resolved config in place (and return it)."""
    schema = schema or _base()[0]
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        _merge(cfg, nested, schema, f"--set {text}")
    return cfg


def fill_defaults(cfg: dict) -> dict:
    """Add the keys (and sections) of ``_base.toml`` that ``cfg`` lacks, with their base
    values, in place: a run folder written before a key existed reads as if it had the
    default."""
    base = _base()[0]
    for section, table in base.items():
        if isinstance(table, dict):
            target = cfg.setdefault(section, {})
            for key, value in table.items():
                target.setdefault(key, copy.deepcopy(value))
    return cfg


def flat_config(cfg: dict) -> dict[str, Any]:
    """Dotted key → value: ``section.key`` for a table's keys, the name of a top-level value."""
    return {f"{name}.{key}" if isinstance(value, dict) else name: inner
            for name, value in cfg.items()
            for key, inner in (value.items() if isinstance(value, dict) else [(None, value)])}


def differing_keys(a: dict, b: dict, ignored=lambda dotted: False) -> list[tuple[str, Any, Any]]:
    """``(dotted key, a's value, b's value)`` of the keys whose values differ between the
    configs ``a`` and ``b``, sorted, except those ``ignored(dotted key)`` holds; a key one
    of them lacks has the value :data:`UNSET` there."""
    flat_a, flat_b = flat_config(a), flat_config(b)
    return [(key, flat_a.get(key, UNSET), flat_b.get(key, UNSET)) for key in sorted(set(flat_a) | set(flat_b))
            if not ignored(key) and flat_a.get(key, UNSET) != flat_b.get(key, UNSET)]


class _Unset:
    def __repr__(self) -> str:
        return "unset"


#: The value :func:`differing_keys` gives a key that a config lacks.
UNSET = _Unset()


#: ``optim.schedule`` / ``probe.schedule`` (:func:`vision_benchmarks.evaluate.lr_factor`).
SCHEDULES = ("constant", "cosine", "cosine-epoch", "step")

#: Counts that must be at least 1, and those that may be 0 (0 means "off" or "all").
AT_LEAST_ONE = (("run", "checkpoint_every"), ("model", "width"), ("model", "hidden_dim"), ("model", "proj_dim"),
                ("method", "n_split"), ("moco", "queue_size"), ("moco", "key_bn_splits"), ("augment", "size"),
                ("optim", "epochs"), ("optim", "batch_size"), ("knn", "k"), ("probe", "epochs"), ("probe", "batch_size"),
                ("measure", "augmentations"), ("measure", "images"), ("measure", "histogram_bins"),
                ("measure", "flowers_queries"), ("measure", "flowers_k"), ("data", "store_size"))
AT_LEAST_ZERO = (("run", "threads"), ("run", "knn_every"), ("run", "log_every"), ("run", "snapshot_every"),
                 ("data", "workers"), ("data", "train_subset"), ("data", "test_subset"), ("method", "equiv_batch_size"),
                 ("optim", "warmup_epochs"), ("measure", "flowers_max_images"),
                 ("method", "lam"), ("optim", "weight_decay"), ("probe", "weight_decay"), ("optim", "momentum"),
                 ("probe", "momentum"), ("optim", "gamma"), ("probe", "gamma"))
POSITIVE = (("method", "temperature"), ("knn", "temperature"), ("optim", "lr"), ("probe", "lr"))
PROBABILITIES = (("augment", "flip_p"), ("augment", "jitter_p"), ("augment", "grayscale_p"), ("augment", "blur_p"),
                 ("moco", "momentum"))
#: Lists: (section, key, their length (None: any), the fewest elements, the element type).
LISTS = (("augment", "scale", 2, 2, float), ("augment", "ratio", 2, 2, float), ("augment", "jitter", 4, 4, float),
         ("augment", "blur_sigma", 2, 2, float), ("optim", "milestones", None, 0, int),
         ("probe", "milestones", None, 0, int), ("probe", "seeds", None, 1, int))


def _check_values(cfg: dict) -> None:
    """Ranges of single values and the shape of lists (before any check divides by them)."""
    def fail(section, key, expected):
        raise ConfigError(f"{section}.{key} must be {expected}, got {cfg[section][key]!r}")

    for section, key, length, fewest, kind in LISTS:
        value = cfg[section][key]
        numbers = all((isinstance(v, (int, float)) if kind is float else isinstance(v, int)) and not isinstance(v, bool)
                      for v in value)
        if not numbers or (length is not None and len(value) != length) or len(value) < fewest:
            shape = f"{length} numbers" if length else "a non-empty list of integers" if fewest else "a list of integers"
            fail(section, key, shape)
    for section, table in cfg.items():  # every float setting, before any range check (NaN passes `< 0`)
        for key, value in table.items() if isinstance(table, dict) else ():
            if isinstance(value, float) and not math.isfinite(value):
                fail(section, key, "finite")
            if isinstance(value, list) and not all(math.isfinite(v) for v in value if isinstance(v, float)):
                fail(section, key, "finite numbers")
    for section, key in AT_LEAST_ONE:
        if cfg[section][key] < 1:
            fail(section, key, "at least 1")
    for section, key in AT_LEAST_ZERO:
        if cfg[section][key] < 0:
            fail(section, key, "at least 0")
    for section, key in POSITIVE:
        if not cfg[section][key] > 0:
            fail(section, key, "positive")
    for section, key in PROBABILITIES:
        if not 0 <= cfg[section][key] <= 1:
            fail(section, key, "a probability in [0, 1]")
    a = cfg["augment"]
    if not 0 < a["scale"][0] <= a["scale"][1] <= 1:
        fail("augment", "scale", "[lo, hi] with 0 < lo <= hi <= 1")
    for key in ("ratio", "blur_sigma"):
        if not 0 < a[key][0] <= a[key][1]:
            fail("augment", key, "[lo, hi] with 0 < lo <= hi")
    if min(a["jitter"]) < 0 or a["jitter"][3] > 0.5:
        fail("augment", "jitter", "[brightness, contrast, saturation, hue] >= 0, with hue <= 0.5")
    if a["blur_kernel"] < 1 or a["blur_kernel"] % 2 == 0:
        fail("augment", "blur_kernel", "odd and positive")
    if cfg["optim"]["warmup_epochs"] > cfg["optim"]["epochs"]:
        fail("optim", "warmup_epochs", f"at most optim.epochs={cfg['optim']['epochs']}")


def validate(cfg: dict) -> None:
    """Cross-field checks that the schema's types cannot express."""
    from protein_care.losses import LOSS_VARIANTS
    from vision_benchmarks.methods import PASSES
    from vision_benchmarks.models import HEAD_KINDS

    _check_values(cfg)
    method = cfg["method"]
    if method["framework"] not in ("simclr", "moco"):
        raise ConfigError(f"method.framework must be 'simclr' or 'moco', got {method['framework']!r}")
    if method["loss"] not in LOSS_VARIANTS:
        raise ConfigError(f"method.loss must be one of {sorted(LOSS_VARIANTS)}, got {method['loss']!r}")
    if method["framework"] == "moco" and method["loss"] not in ("simclr", "care"):
        raise ConfigError(
            f"method.loss={method['loss']!r}: the ablations are defined on SimCLR's InfoNCE; "
            "with framework='moco' use loss='simclr' (MoCo-v2) or 'care'"
        )
    batch = cfg["optim"]["batch_size"]
    equiv = method["equiv_batch_size"] or batch
    if equiv > batch:
        raise ConfigError(f"method.equiv_batch_size={equiv} exceeds optim.batch_size={batch}")
    if equiv % method["n_split"] or equiv // method["n_split"] < 2:
        raise ConfigError(
            f"method.n_split={method['n_split']} must divide the equivariance batch {equiv} into chunks of >= 2"
        )
    for section, key, choices in (
        ("optim", "optimizer", ("adam", "sgd")), ("probe", "optimizer", ("adam", "sgd")),
        ("optim", "schedule", SCHEDULES), ("probe", "schedule", SCHEDULES),
        ("model", "head", HEAD_KINDS), ("method", "equiv_views", ("per-chunk", "release")), ("method", "normalization", ("release", "pair_mean")),
        ("method", "passes", PASSES),
        ("measure", "space", ("projection", "backbone")), ("measure", "flowers_space", ("projection", "backbone")),
        ("measure", "flowers_split", ("train", "val", "test")), ("augment", "blur_impl", ("torchvision", "cv2")),
    ):
        if cfg[section][key] not in choices:
            raise ConfigError(f"{section}.{key} must be one of {choices}, got {cfg[section][key]!r}")
    if cfg["data"]["name"] == "imagenet100" and cfg["data"]["store_size"] < cfg["augment"]["size"]:
        raise ConfigError(f"data.store_size={cfg['data']['store_size']} must be at least augment.size="
                          f"{cfg['augment']['size']} (evaluation views are Resize(store_size), CenterCrop(size))")
    if cfg["method"]["framework"] == "moco" and cfg["moco"]["queue_size"] % batch:
        raise ConfigError(f"moco.queue_size={cfg['moco']['queue_size']} must be a multiple of optim.batch_size={batch}")

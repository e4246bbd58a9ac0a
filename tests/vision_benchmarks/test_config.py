"""Configs: one config per Table 1 cell with the paper's hyperparameters, merge order,
and overrides that are checked against the schema."""

from __future__ import annotations

import re

import pytest

from vision_benchmarks.config import ConfigError, available_configs, load_config, parse_override

# CARE appendix E.3 (shared/notes/care_reference.md §3): (n_split, λ, τ_SimCLR, τ_MoCo, optimizer, lr, epochs)
PAPER = {
    "cifar10": (16, 0.01, 0.5, 0.1, "adam", 1e-3, 400),
    "cifar100": (4, 0.001, 0.5, 0.1, "adam", 1e-3, 400),
    "stl10": (8, 0.01, 0.5, 0.1, "sgd", 0.06, 400),
}
METHODS = {"simclr": ("simclr", "simclr"), "moco": ("moco", "simclr"), "care": ("simclr", "care"),
           "care-moco": ("moco", "care")}


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10", "imagenet100"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_table1_cell_has_a_config(dataset, method):
    cfg = load_config(f"{dataset}_{method}")
    assert (cfg["method"]["framework"], cfg["method"]["loss"]) == METHODS[method]
    assert cfg["data"]["name"] == dataset and cfg["model"]["arch"] == "resnet50"


@pytest.mark.parametrize("dataset", list(PAPER))
@pytest.mark.parametrize("method", list(METHODS))
def test_cifar_and_stl_configs_carry_the_papers_hyperparameters(dataset, method):
    n_split, lam, tau_simclr, tau_moco, optimizer, lr, epochs = PAPER[dataset]
    cfg = load_config(f"{dataset}_{method}")
    m, o = cfg["method"], cfg["optim"]
    assert (m["n_split"], m["lam"], o["optimizer"], o["lr"], o["epochs"], o["batch_size"]) == (
        n_split, lam, optimizer, lr, epochs, 256)
    assert m["temperature"] == (tau_moco if m["framework"] == "moco" else tau_simclr)
    assert cfg["model"]["cifar_stem"] and cfg["augment"]["size"] == 32
    assert (cfg["probe"]["epochs"], cfg["probe"]["batch_size"], cfg["probe"]["lr"]) == (100, 512, 1e-3)


def test_stl10_uses_sgd_cosine_with_warm_up():
    o = load_config("stl10_care")["optim"]
    assert (o["schedule"], o["warmup_epochs"], o["weight_decay"]) == ("cosine", 10, 5e-4)


def test_imagenet100_takes_the_per_framework_values():
    simclr, moco = load_config("imagenet100_care")["method"], load_config("imagenet100_care-moco")["method"]
    # the paper's n_split (4, 8) are per GPU of the release's 4: global 16 and 32, chunks of 8 and 4
    assert (simclr["n_split"], simclr["lam"], simclr["temperature"]) == (16, 0.005, 0.2)
    assert (moco["n_split"], moco["lam"], moco["temperature"]) == (32, 0.01, 0.2)
    assert [m["equiv_batch_size"] // m["n_split"] for m in (simclr, moco)] == [8, 4]  # the release's chunk sizes


def test_imagenet100_follows_the_releases_moco_code_for_head_schedule_and_sync_bn():
    """release imagenet100/: MoCo-v2's MLP head and per-epoch cosine for every cell,
    SyncBatchNorm only where the equivariance loss trains; CIFAR/STL10 keep the BN head."""
    for method in ("simclr", "moco", "care", "care-moco"):
        cfg = load_config(f"imagenet100_{method}")
        assert (cfg["model"]["head"], cfg["model"]["hidden_dim"], cfg["model"]["proj_dim"]) == ("mlp", 2048, 128)
        assert cfg["optim"]["schedule"] == "cosine-epoch"
        assert cfg["run"]["sync_bn"] is (method.startswith("care"))
        other = load_config(f"cifar10_{method}")
        assert (other["model"]["head"], other["model"]["hidden_dim"], other["run"]["sync_bn"]) == ("bn", 512, False)
    with pytest.raises(ConfigError, match=r"model.head must be one of \('bn', 'mlp'\), got 'linear'"):
        load_config("cifar10_care", ["model.head=linear"])


@pytest.mark.parametrize("name", ["cifar10_care", "imagenet100_care", "stl10_simclr"])
def test_choosing_moco_with_set_takes_the_moco_table_as_the_moco_config_does(name):
    chosen = load_config(name, ["method.framework=moco"])
    shipped = load_config(name.replace("_care", "_care-moco").replace("_simclr", "_moco"))
    for section in ("method", "moco"):
        assert chosen[section] == shipped[section], section


@pytest.mark.parametrize(("override", "message"), [
    ("method.n_split=0", "method.n_split must be at least 1"),
    ("run.checkpoint_every=0", "run.checkpoint_every must be at least 1"),
    ("moco.key_bn_splits=0", "moco.key_bn_splits must be at least 1"),
    ("knn.k=0", "knn.k must be at least 1"),
    ("run.log_every=-1", "run.log_every must be at least 0"),
    ("method.temperature=0", "method.temperature must be positive"),
    ("augment.flip_p=1.5", "augment.flip_p must be a probability"),
    ("augment.scale=[0.4]", "augment.scale must be 2 numbers"),
    ("augment.scale=[0.5, 0.2]", r"augment.scale must be \[lo, hi\] with 0 < lo <= hi <= 1"),
    ("augment.jitter=[0.4, 0.4]", "augment.jitter must be 4 numbers"),
    ("augment.jitter=[0.4, 0.4, 0.4, 0.7]", "hue <= 0.5"),
    ("augment.blur_kernel=4", "augment.blur_kernel must be odd"),
    ("optim.milestones=[\"x\"]", "optim.milestones must be a list of integers"),
    ("probe.seeds=[]", "probe.seeds must be a non-empty list of integers"),
    ("optim.warmup_epochs=500", "optim.warmup_epochs must be at most optim.epochs"),
])
def test_values_out_of_range_are_config_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("digits_care", [override])


def test_ablation_and_digits_configs_exist():
    names = set(available_configs())
    assert {"cifar10_inv", "cifar10_unif", "cifar10_equi-unif", "digits_care", "digits_simclr"} <= names
    assert load_config("cifar10_equi-unif")["method"]["loss"] == "equi-unif"


def test_overrides_win_and_are_type_checked():
    cfg = load_config("digits_care", ["optim.epochs=3", "method.lam=1", "augment.scale=[0.2, 1.0]", "run.device=cpu"])
    assert cfg["optim"]["epochs"] == 3 and cfg["method"]["lam"] == 1.0 and isinstance(cfg["method"]["lam"], float)
    assert cfg["augment"]["scale"] == [0.2, 1.0] and cfg["run"]["device"] == "cpu"
    with pytest.raises(ConfigError, match="optim.epochs: expected int"):
        load_config("digits_care", ["optim.epochs=ten"])
    with pytest.raises(ConfigError, match="unknown key 'optim.epoch'"):
        load_config("digits_care", ["optim.epoch=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("digits_care", ["optim.epochs"])


def test_cross_field_checks_name_the_fields():
    with pytest.raises(ConfigError, match="n_split"):
        load_config("digits_care", ["method.n_split=5"])
    with pytest.raises(ConfigError, match="method.loss"):
        load_config("digits_care", ["method.loss=byol"])
    with pytest.raises(ConfigError, match="ablations"):
        load_config("digits_care", ["method.framework=moco", "method.loss=inv"])
    with pytest.raises(ConfigError, match="method.passes must be one of"):
        load_config("digits_care", ["method.passes=single"])


def test_a_config_file_outside_the_package_and_a_missing_one(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('dataset = "digits"\n[method]\nloss = "care"\n[optim]\nepochs = 2\n')
    cfg = load_config(path)
    assert cfg["optim"]["epochs"] == 2 and cfg["method"]["loss"] == "care"
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('dataset = "mnist"\n')
    with pytest.raises(ConfigError, match="dataset"):
        load_config(bad)


def test_override_values_are_read_as_toml_with_bare_words_as_strings():
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a.b=sgd") == (["a", "b"], "sgd")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=true") == (["a", "b"], True)


def test_differing_keys_names_each_changed_key_once_with_unset_for_a_missing_one():
    from vision_benchmarks.config import UNSET, differing_keys

    a = {"dataset": "cifar10", "optim": {"lr": 0.1, "epochs": 10}, "run": {"seed": 0}}
    b = {"dataset": "stl10", "optim": {"lr": 0.1, "epochs": 20, "momentum": 0.9}, "run": {"seed": 1}}
    assert differing_keys(a, b) == [("dataset", "cifar10", "stl10"), ("optim.epochs", 10, 20),
                                    ("optim.momentum", UNSET, 0.9), ("run.seed", 0, 1)]
    assert differing_keys(a, b, ignored=lambda key: key.startswith("run.")) == differing_keys(a, b)[:3]
    assert differing_keys(a, a) == [] and repr(UNSET) == "unset"


def test_every_float_setting_must_be_finite():
    from vision_benchmarks.config import _base

    base = _base()[0]
    keys = [f"{section}.{key}" for section, table in base.items() if isinstance(table, dict)
            for key, value in table.items() if isinstance(value, float)]
    assert {"method.lam", "optim.lr", "method.temperature", "moco.momentum"} <= set(keys)
    for key in keys:
        for value in ("nan", "inf", "-inf"):
            with pytest.raises(ConfigError, match=f"^{re.escape(key)} must be finite"):
                load_config("digits_care", [f"{key}={value}"])
    for key, value in (("augment.scale", "[nan, 1.0]"), ("augment.jitter", "[0.4, 0.4, inf, 0.1]"),
                       ("augment.blur_sigma", "[0.1, inf]")):
        with pytest.raises(ConfigError, match=f"^{re.escape(key)} must be finite numbers"):
            load_config("digits_care", [f"{key}={value}"])

"""Bad input to the protein-care commands: one line naming the argument or file, exit 2,
before any long work; never a traceback."""

from __future__ import annotations

import json
import math

import pytest

from protein_care.cli import main
from protein_care.runs import load_run, read_config
from protein_care.training import train
from protein_care.training.config import validate, with_defaults

from .synthetic_store import SyntheticStore

TINY = {"hidden": 16, "dim": 8, "phi_layers": 1, "rho_layers": 1, "batch_size": 8, "n_split": 2, "max_steps": 2,
        "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inputs") / "run"
    train({**TINY, "out": str(out)}, store=SyntheticStore(30))
    return out


@pytest.fixture(scope="module")
def disk_store(tmp_path_factory):
    """12 synthetic clouds written as a real store, all in the test split (the runs here
    trained on an in-memory stand-in, which names no store)."""
    from data_pipeline.store_writer import CloudRecord, write_store

    synthetic, out = SyntheticStore(12), tmp_path_factory.mktemp("store") / "store"
    write_store((CloudRecord(i, synthetic[k], synthetic.features(k), {"split": "test"})
                 for k, i in enumerate(synthetic.ids)), out)
    return out


@pytest.fixture
def vision_run(tmp_path):
    """A vision-benchmarks run folder's config.json, as `vision-benchmarks pretrain` writes it."""
    from vision_benchmarks.config import load_config

    folder = tmp_path / "vision-run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(load_config("digits_care")))
    return folder


@pytest.mark.parametrize("key, value", [("lam", math.inf), ("lr", math.inf), ("weight_decay", math.inf),
                                        ("length_scale", math.inf), ("temperature", math.nan), ("lam", math.nan)])
def test_training_values_must_be_finite(key, value):
    with pytest.raises(ValueError, match=f"--{key.replace('_', '-')} {value!r}: expected a finite number"):
        validate(with_defaults({key: value}))


@pytest.mark.parametrize("key", ["heads", "set_transformer_blocks", "residue_embedding_dim", "phi_layers", "rho_layers"])
def test_architecture_sizes_must_be_at_least_one(key):
    with pytest.raises(ValueError, match=f"--{key.replace('_', '-')} 0: expected an integer >= 1"):
        validate(with_defaults({key: 0}))


@pytest.mark.parametrize("command", [["evaluate"], ["plot", "--out", "x.html"], ["compare", "--out", "cmp"]])
def test_a_vision_benchmarks_run_folder_is_named(vision_run, tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    assert main([command[0], str(vision_run), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert "not the config of a protein-care run (it is a vision-benchmarks run" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="vision-benchmarks run"):
        read_config(vision_run)


def test_weights_of_another_architecture_are_named(run_dir, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["hidden"] = 24  # config.json no longer describes the saved weights
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"checkpoint.pt: its weights do not fit the encoder of .*config.json"):
        load_run(other)


def test_output_paths_of_the_wrong_kind_are_refused_before_the_work(run_dir, disk_store, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    cases = [
        (["evaluate", str(run_dir), "--out", str(tmp_path)], "--out"),  # a folder for a file
        (["plot", str(run_dir), "--out", str(tmp_path)], "--out"),
        (["plot", str(run_dir), "--out", str(tmp_path / "a-file" / "x.html")], "is a file, not a folder"),
        (["compare", str(run_dir), "--store", str(disk_store), "--out", str(tmp_path / "a-file")],
         "a file is in the way"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_compare_checks_ids_steps_and_store_before_evaluating(run_dir, disk_store, tmp_path, capsys):
    assert main(["compare", str(run_dir), "--out", str(tmp_path / "c"), "--steps", "1"]) == 2
    assert "--steps 1: expected an integer >= 2" in capsys.readouterr().err
    assert main(["compare", str(run_dir), "--out", str(tmp_path / "c")]) == 2
    assert "--store: not given, and" in capsys.readouterr().err
    assert main(["compare", str(run_dir), "--store", str(disk_store), "--out", str(tmp_path / "c"),
                 "--ids", "cloud1", "nosuch"]) == 2
    assert "--ids: not in the store" in capsys.readouterr().err and not (tmp_path / "c").exists()


@pytest.mark.parametrize("argv, words", [
    (["evaluate", "RUN", "--max-clouds", "1"], "--max-clouds: expected an integer >= 2"),
    (["evaluate", "RUN", "--probe-clouds", "1"], "--probe-clouds: expected an integer >= 2"),
    (["plot", "RUN", "--out", "x.html", "--n-proteins", "0"], "--n-proteins: expected an integer >= 1"),
])
def test_counts_are_checked_by_the_parser(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("minutes", ["inf", "nan", "0"])
def test_demo_minutes_must_be_positive_and_finite(minutes, tmp_path, capsys):
    assert main(["demo", "--minutes", minutes, "--out", str(tmp_path / "demo")]) == 2
    assert f"--minutes {float(minutes)}: expected a positive, finite number" in capsys.readouterr().err

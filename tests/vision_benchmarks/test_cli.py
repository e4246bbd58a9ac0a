"""The ``vision-benchmarks`` command line: pretrain → linear-probe → evaluate → report on a
tiny digits run, the report's comparison with Table 1, and clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path


from vision_benchmarks.cli import main
from vision_benchmarks.report import PAPER_TABLE1, report

TINY = ["run.device=cpu", "run.progress=false", "model.width=4", "data.train_subset=48", "data.test_subset=24",
        "optim.batch_size=16", "optim.epochs=1", "method.n_split=4", "method.equiv_batch_size=0", "knn.k=5"]


def _sets(values):
    return [arg for v in values for arg in ("--set", v)]


def test_pretrain_probe_evaluate_report_round_trip(tmp_path, capsys):
    run = tmp_path / "digits_care"
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *_sets(TINY)]) == 0
    assert "random init" in capsys.readouterr().out
    probe = ["probe.epochs=2", "probe.seeds=[0, 1]", "probe.batch_size=16"]
    assert main(["linear-probe", str(run), *_sets(probe)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert set(results["linear_probe_top1"]) >= {"mean", "std", "per_seed"}
    assert len(results["linear_probe_top1"]["per_seed"]) == 2
    assert len(results["linear_probe_top1_random_init"]["per_seed"]) == 2  # the untrained network's probe
    assert main(["evaluate", str(run), "--set", "knn.k=3"]) == 0
    assert json.loads((run / "results.json").read_text())["knn_config"]["k"] == 3
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "report.md")]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "CARE (SimCLR)" in out and (tmp_path / "report.md").read_text() == out


def _fake_run(folder: Path, dataset: str, method: str, probe_mean: float | None) -> Path:
    folder.mkdir(parents=True)
    results = {"dataset": dataset, "method": method, "epochs": 400, "knn_top1": 88.0, "knn_top1_random_init": 30.0}
    if probe_mean is not None:
        results["linear_probe_top1"] = {"mean": probe_mean, "std": 0.1, "per_seed": [probe_mean] * 3}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_report_shows_the_gap_to_the_paper_per_cell(tmp_path):
    runs = [_fake_run(tmp_path / "a", "cifar10", "care", 91.0), _fake_run(tmp_path / "b", "stl10", "moco", None)]
    text = report(runs)
    assert "91.00 ± 0.10" in text and "91.92" in text and "-0.92" in text
    assert "| CARE (SimCLR) | 91.00 (-0.92) / 91.92 |" in text
    assert PAPER_TABLE1["moco"]["stl10"] is None  # not in the paper: shown as –


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["pretrain", "--config", "no_such_config", "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["pretrain", "--config", "digits_care", "--out", str(tmp_path / "x"), "--set", "optim.lr=fast"]) == 2
    assert "optim.lr: expected float" in capsys.readouterr().err
    assert main(["pretrain", "--config", "cifar10_care", "--out", str(tmp_path / "x"),
                 "--set", f"data.root={tmp_path / 'nodata'}"]) == 2
    assert "vision-benchmarks download cifar10" in capsys.readouterr().err
    assert main(["linear-probe", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_a_missing_gpu_is_named_by_the_config_key(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without one
    assert main(["pretrain", "--config", "digits_care", "--out", str(tmp_path / "x"), "--set", "run.device=cuda"]) == 2
    assert "run.device=cuda: no CUDA device is available on this machine (use run.device=cpu)" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = shutil.which("vision-benchmarks") or str(Path(__file__).parents[2] / ".venv" / "bin" / "vision-benchmarks")
    done = subprocess.run([exe, "configs"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "cifar10_care" in done.stdout.split()


def test_new_weights_drop_what_was_measured_on_the_old_ones(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *_sets(TINY)]) == 0
    assert main(["linear-probe", str(run), *_sets(["probe.epochs=1", "probe.seeds=[0]", "probe.random_init=false"])]) == 0
    assert main(["evaluate", str(run), *_sets(["measure.augmentations=2", "measure.images=16"])]) == 0
    assert "linear_probe_top1" in json.loads((run / "results.json").read_text()) and (run / "evaluation.json").is_file()
    capsys.readouterr()
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *_sets([*TINY, "optim.epochs=2"])]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 2 and "linear_probe_top1" not in results and "probe_config" not in results
    assert not (run / "evaluation.json").exists()
    assert "dropped what was measured on the earlier ones" in capsys.readouterr().err
    # the same weights again (nothing left to train) keep their measurements
    assert main(["linear-probe", str(run), *_sets(["probe.epochs=1", "probe.seeds=[0]", "probe.random_init=false"])]) == 0
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *_sets([*TINY, "optim.epochs=2"])]) == 0
    assert "linear_probe_top1" in json.loads((run / "results.json").read_text())


def test_probe_and_evaluate_refuse_an_unfinished_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *_sets(TINY)]) == 0
    config = json.loads((run / "config.json").read_text())
    config["optim"]["epochs"] = 3  # as a 3-epoch run stopped after its first epoch leaves it
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    for command in ("linear-probe", "evaluate"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err
        assert "checkpoint is at epoch 1 of 3" in err and "--config digits_care.toml" in err


def test_output_into_a_closed_pipe_stops_quietly():
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "vision_benchmarks.cli", "configs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # as `| head` does, before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "Broken pipe" not in err, err


def test_an_interrupted_pretrain_says_how_it_resumes(tmp_path, capsys, monkeypatch):
    import vision_benchmarks.train as train

    def interrupt(*args, **kwargs):  # Ctrl-C in the first step
        raise KeyboardInterrupt

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(train, "lr_factor", interrupt)
        assert main(["pretrain", "--config", "digits_care", "--out", str(run), *_sets(TINY)]) == 130
    assert "no checkpoint was written yet" in capsys.readouterr().err and not (run / train.CHECKPOINT).exists()

    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *_sets(TINY)]) == 0
    longer = _sets([*TINY, "optim.epochs=2"])
    with monkeypatch.context() as patch:
        patch.setattr(train, "lr_factor", interrupt)
        assert main(["pretrain", "--config", "digits_care", "--out", str(run), *longer]) == 130
    assert f"the same command resumes it from {run / train.CHECKPOINT}" in capsys.readouterr().err
    assert train.load_checkpoint(run)["epoch"] == 1  # what the interrupted epoch left
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *longer]) == 0
    assert json.loads((run / "results.json").read_text())["epochs"] == 2


def _protein_care_run(folder: Path) -> Path:
    """A run folder as ``protein-care train`` leaves it: a flat config.json and a checkpoint."""
    import torch

    folder.mkdir()
    config = {"encoder": "deepset", "store": "store", "length_scale": 25.4, "lam": 0.01, "lr": 0.001, "max_steps": 3}
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({"model": {}, "optimizer": {}, "step": 3, "epoch": 0}, folder / "checkpoint.pt")
    return folder


def test_a_protein_care_run_folder_is_refused_naming_it(tmp_path, capsys):
    run = _protein_care_run(tmp_path / "r0")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for argv in (["pretrain", "--config", "digits_care", "--out", str(run), *_sets(TINY)],
                 ["evaluate", str(run), "--knn-only"], ["linear-probe", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{run} holds a protein-care run, not a vision-benchmarks run" in err, err
        assert len(err.splitlines()) == 1 and "cifar10" not in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing written into it


def test_output_paths_of_the_wrong_kind_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import vision_benchmarks.data as data
    import vision_benchmarks.train as train

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr(train, "load_data", no_work)
    monkeypatch.setattr(data, "load_dataset", no_work)
    afile, folder = tmp_path / "afile", tmp_path / "folder"
    afile.write_text("")
    folder.mkdir()
    run = _fake_run(tmp_path / "run", "cifar10", "care", 91.0)
    for argv, named in ((["pretrain", "--config", "digits_care", "--out", str(afile), *_sets(TINY)], afile),
                        (["sweep", str(run), "--out", str(afile)], afile),
                        (["report", str(run), "--out", str(folder)], folder),
                        (["download", "cifar10", "--root", str(afile)], afile)):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"vision-benchmarks {argv[0]}: error: ") and str(named) in err, err
        assert len(err.splitlines()) == 1 and out == ""
    assert afile.read_text() == "" and list(folder.iterdir()) == []


def test_an_os_error_is_a_one_line_message_and_a_closed_pipe_still_exits_quietly(tmp_path, capsys, monkeypatch):
    import protein_care.cli
    import vision_benchmarks.report as report_module

    def denied(run_dirs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(report_module, "report", denied)
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"vision-benchmarks report: error: {tmp_path / 'x'}: Permission denied\n"

    def closed(run_dirs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(report_module, "report", closed)
    monkeypatch.setattr(protein_care.cli, "closed_pipe_exit", lambda: 141)  # the real one redirects stdout
    assert main(["report", str(tmp_path)]) == 141
    assert capsys.readouterr().err == ""

"""``vision-benchmarks report``: a Table 1 cell holds only a run of that cell's shipped
config (λ, epochs, architecture... as shipped), chosen deterministically and named; the
other runs stay in the runs table with the reason they were left out. ``report`` and
``sweep`` skip folders without results.json (a run still training, a sweep's output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vision_benchmarks.cli import main
from vision_benchmarks.config import CONFIG_DIR, load_config
from vision_benchmarks.report import load_results, report
from vision_benchmarks.train import method_label


def _run(folder: Path, config: str, sets=(), probe: float | None = 90.0, seeds: int = 3,
         probe_sets=()) -> str:
    """A finished run's results.json as ``pretrain`` then ``linear-probe`` write it."""
    cfg = load_config(config, sets)
    results = {"config": cfg, "dataset": cfg["dataset"], "method": method_label(cfg),
               "epochs": cfg["optim"]["epochs"], "knn_top1": 80.0, "knn_top1_random_init": 20.0}
    if probe is not None:
        probe_cfg = load_config(config, [*sets, *probe_sets])["probe"]
        results["linear_probe_top1"] = {"mean": probe, "std": 0.1, "per_seed": [probe] * seeds,
                                        "seeds": list(range(seeds))}
        results["probe_config"] = probe_cfg
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return str(folder)


def _cell(text: str, method: str) -> str:
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {method} |")]
    return row


def test_a_cell_holds_only_a_run_of_its_shipped_config(tmp_path):
    other = _run(tmp_path / "c10_care_lam0.1", "cifar10_care", ["method.lam=0.1"], probe=85.0)
    shipped = _run(tmp_path / "c10_care", "cifar10_care", ["run.device=cpu", "data.root=/shared/data"], probe=91.5)
    short = _run(tmp_path / "c10_care_short", "cifar10_care", ["optim.epochs=100", "model.arch=resnet18"], probe=88.0)
    quick_probe = _run(tmp_path / "c10_care_probe10", "cifar10_care", probe=92.5, probe_sets=["probe.epochs=10"])
    text = report([other, short, quick_probe, shipped])
    assert "| CARE (SimCLR) | 91.50 (-0.42) / 91.92 |" in _cell(text, "CARE (SimCLR)")
    assert f"- CARE (SimCLR) / cifar10: {shipped} (3 probe seeds)" in text
    assert f"- {other} (CARE (SimCLR) / cifar10): λ 0.1 ≠ 0.01 of cifar10_care" in text
    assert f"- {short} (CARE (SimCLR) / cifar10): model.arch \"resnet18\" ≠ \"resnet50\", " \
           "optim.epochs 100 ≠ 400 of cifar10_care" in text
    assert f"- {quick_probe} (CARE (SimCLR) / cifar10): probe.epochs 10 ≠ 100 of cifar10_care" in text
    for run, probe in ((other, "85.00"), (short, "88.00"), (quick_probe, "92.50")):  # still in the runs table
        assert f"| {run} | cifar10 | CARE (SimCLR) |" in text and f"{probe} ± 0.10" in text
    # only the lam run: the cell stays empty, and says why
    alone = report([other])
    assert "| CARE (SimCLR) | – / 91.92 |" in alone and "λ 0.1 ≠ 0.01 of cifar10_care" in alone


def test_a_copied_config_file_or_a_missing_probe_leaves_the_cell_empty(tmp_path):
    copy = tmp_path / "my_care.toml"
    copy.write_text((CONFIG_DIR / "cifar10_care.toml").read_text())  # the same settings, another file
    copied = _run(tmp_path / "copied", str(copy))
    unprobed = _run(tmp_path / "unprobed", "cifar10_care", probe=None)
    text = report([copied, unprobed])
    assert "| CARE (SimCLR) | – / 91.92 |" in text
    assert f"- {copied} (CARE (SimCLR) / cifar10): config my_care.toml ≠ cifar10_care.toml" in text
    assert f"- {unprobed} (CARE (SimCLR) / cifar10): no linear probe yet" in text


def test_of_several_eligible_runs_the_most_probe_seeds_then_the_name_wins(tmp_path):
    b = _run(tmp_path / "b", "cifar10_simclr", ["run.seed=1"], probe=90.0, seeds=3)
    a = _run(tmp_path / "a", "cifar10_simclr", ["run.seed=2"], probe=89.0, seeds=1)
    c = _run(tmp_path / "c", "cifar10_simclr", ["run.seed=3"], probe=91.0, seeds=3)
    for order in ([a, b, c], [c, b, a]):
        text = report(order)
        assert "| SimCLR | 90.00 (-0.98) / 90.98 |" in _cell(text, "SimCLR")
        assert f"- SimCLR / cifar10: {b} (3 probe seeds; also eligible: {c}, {a})" in text


def test_report_and_sweep_skip_folders_without_results(tmp_path, capsys):
    runs = tmp_path / "runs"
    _run(runs / "c10_care", "cifar10_care", probe=91.5)
    _run(runs / "c10_care_lam0.1", "cifar10_care", ["method.lam=0.1"], probe=85.0)
    (runs / "still_training").mkdir()
    (runs / "still_training" / "config.json").write_text("{}")
    every = sorted(str(p) for p in runs.iterdir())  # what `runs/*` expands to
    assert main(["sweep", *every, "--out", str(runs / "sweep")]) == 0
    assert "skipping 1 folder(s) without results.json" in capsys.readouterr().err
    assert (runs / "sweep" / "sweep.json").is_file()
    every = sorted(str(p) for p in runs.iterdir())  # now with the sweep's output folder
    assert main(["report", *every]) == 0
    out, err = capsys.readouterr()
    assert "91.50 (-0.42) / 91.92" in out
    assert f"{runs / 'still_training'}, {runs / 'sweep'}" in err and len(err.splitlines()) == 1
    assert [run for run, _ in load_results(every)] == [str(runs / "c10_care"), str(runs / "c10_care_lam0.1")]


def test_report_without_any_results_names_the_arguments(tmp_path, capsys):
    (tmp_path / "training").mkdir()
    assert main(["report", str(tmp_path / "training"), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no results.json" in err and str(tmp_path / "training") in err and str(tmp_path / "missing") in err
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_results([tmp_path / "training"])


def test_report_and_sweep_skip_a_damaged_results_json_with_a_note(tmp_path, capsys):
    good = _run(tmp_path / "c10_care", "cifar10_care", probe=91.5)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text('{"knn_top1": ')  # as a full disk leaves it
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "results.json").write_text("[1, 2]")  # valid JSON, but not a run's results
    runs = [str(broken), good, str(listed)]
    assert main(["report", *runs]) == 0
    out, err = capsys.readouterr()
    assert "91.50 (-0.42) / 91.92" in out
    assert len(err.splitlines()) == 1 and "skipping 2 damaged results.json" in err
    assert str(broken / "results.json") in err and str(listed / "results.json") in err
    assert main(["sweep", *runs, "--out", str(tmp_path / "sweep")]) == 0
    assert "skipping 2 damaged results.json" in capsys.readouterr().err
    assert [run["run"] for run in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]] == [good]
    # none usable: an error naming the damaged file
    assert main(["report", str(broken)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"{broken / 'results.json'} is not valid JSON" in err

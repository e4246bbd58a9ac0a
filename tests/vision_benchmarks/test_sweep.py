"""``vision-benchmarks sweep``: the λ sweep (Fig. 8) and loss ablations (Fig. 7) from several
runs' results.json, and their evaluate measurements side by side."""

from __future__ import annotations

import json
from pathlib import Path

from vision_benchmarks.cli import main
from vision_benchmarks.measure import AUGMENTATION_TYPES
from vision_benchmarks.sweep import ablation_groups, collect, lambda_groups


def _run(root: Path, name: str, loss: str, lam: float, probe: float | None, knn: float = 50.0,
         framework: str = "simclr", dataset: str = "cifar10", evaluated: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    results = {"dataset": dataset, "method": loss, "knn_top1": knn, "epochs": 2,
               "config": {"method": {"framework": framework, "loss": loss, "lam": lam}},
               "history": [{"epoch": 1, "alignment": 1.0}, {"epoch": 2, "alignment": 0.8}]}
    if probe is not None:
        results["linear_probe_top1"] = {"mean": probe, "std": 0.5, "per_seed": [probe] * 3}
    (folder / "results.json").write_text(json.dumps(results))
    if evaluated:
        records = [{"index": i, "type": AUGMENTATION_TYPES[i % 6], "wahba_error": 0.1 * (i + 1) + lam,
                    "gamma": 0.01 * i, "cos_hist": [0, 1, 3, 6], "cos_var": 0.02} for i in range(6)]
        evaluation = {"label": f"{name} ({loss})", "augmentations": records, "histogram_bins": 4,
                      "training": [{"epoch": 0, "gamma_mean": 0.3}, {"epoch": 2, "gamma_mean": 0.1}],
                      "summary": {"wahba_mean": 0.35 + lam}}
        (folder / "evaluation.json").write_text(json.dumps(evaluation))
    return folder


def test_lambda_groups_sort_care_runs_by_lambda_with_the_simclr_baseline(tmp_path):
    runs = [_run(tmp_path, "care_0.1", "care", 0.1, 90.0), _run(tmp_path, "care_0.01", "care", 0.01, 91.5),
            _run(tmp_path, "simclr", "simclr", 0.0, 90.9), _run(tmp_path, "moco_care", "care", 0.01, 92.0,
                                                                framework="moco")]
    metric, groups = lambda_groups(collect(runs))
    assert metric == "linear probe top-1 (%)"
    assert sorted(groups["cifar10 / simclr"]["points"]) == [(0.01, 91.5, 0.5, "care_0.01"), (0.1, 90.0, 0.5, "care_0.1")]
    assert groups["cifar10 / simclr"]["baselines"] == [(90.9, "simclr")]
    assert groups["cifar10 / moco"] == {"points": [(0.01, 92.0, 0.5, "moco_care")], "baselines": []}


def test_ablations_order_the_objectives_and_fall_back_to_knn_when_a_probe_is_missing(tmp_path):
    runs = [_run(tmp_path, name, loss, lam, probe, knn=knn) for name, loss, lam, probe, knn in [
        ("care", "care", 0.01, 91.0, 80.0), ("inv", "inv", 0.0, None, 20.0), ("unif", "unif", 0.0, 40.0, 30.0),
        ("eu", "equi-unif", 0.01, 60.0, 55.0), ("simclr", "simclr", 0.0, 90.0, 79.0)]]
    metric, groups = ablation_groups(collect(runs))
    assert metric == "kNN top-1 (%)"  # "inv" has no probe: every bar uses kNN
    assert [b[0] for b in groups["cifar10"]] == ["L_inv", "L_unif", "L_equi + L_unif λ=0.01", "InfoNCE",
                                                 "CARE λ=0.01"]
    assert [b[1] for b in groups["cifar10"]] == [20.0, 30.0, 55.0, 79.0, 80.0]


def test_sweep_command_writes_figures_and_numbers(tmp_path, capsys):
    runs = [_run(tmp_path, "care", "care", 0.01, 91.0, evaluated=True),
            _run(tmp_path, "simclr", "simclr", 0.0, 90.0, evaluated=True),
            _run(tmp_path, "care_big", "care", 0.1, 89.0)]
    out = tmp_path / "sweep"
    assert main(["sweep", *map(str, runs), "--out", str(out)]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert set(summary["figures"]) == {"lambda_sweep", "ablations", "wahba", "gamma", "cosines", "gamma_training"}
    for path in summary["figures"].values():
        assert "plotly.js v" in Path(path).read_text()
    assert "lambda_sweep" in capsys.readouterr().out
    assert [r["name"] for r in summary["runs"]] == ["care", "simclr", "care_big"]
    assert summary["runs"][2]["evaluation_summary"] is None


def test_evaluated_runs_of_one_folder_name_under_different_parents_both_appear(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    runs = [_run(tmp_path / "a", "care", "care", 0.01, 91.0, evaluated=True),
            _run(tmp_path / "b", "care", "care", 0.1, 89.0, evaluated=True)]
    out = tmp_path / "sweep"
    assert main(["sweep", *map(str, runs), "--out", str(out)]) == 0
    from vision_benchmarks.sweep import evaluated_by_label

    labels = list(evaluated_by_label(collect(map(str, runs))))
    assert labels == ["care (care)", f"care (care) [{runs[1]}]"]
    page = (out / "wahba.html").read_text()
    assert all(label.replace("/", "\\u002f") in page for label in labels)  # plotly writes / as \u002f


def test_a_damaged_evaluation_json_is_left_out_with_a_note(tmp_path, capsys):
    good = _run(tmp_path, "care_good", "care", 0.01, 90.0, evaluated=True)
    bad = _run(tmp_path, "care_bad", "care", 0.1, 89.0, evaluated=True)
    (bad / "evaluation.json").write_text('{"label": ')
    assert main(["sweep", str(good), str(bad), "--out", str(tmp_path / "sweep")]) == 0
    err = capsys.readouterr().err
    assert f"leaving out {bad / 'evaluation.json'}: not valid JSON" in err and len(err.splitlines()) == 1
    runs = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]
    assert [r["evaluation_summary"] is None for r in runs] == [False, True]

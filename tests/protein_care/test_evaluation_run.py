"""End to end: a store of real structures (the shared BM5 files; missing ones fail the
tests), a 3-step training run, ``evaluate_run`` and the ``evaluate`` / ``plot`` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from protein_care.cli import main
from protein_care.evaluation import METRIC_KEYS
from protein_care.evaluation.evaluate import evaluate_run, format_table
from protein_care.plotting import png_export_available

REPO = Path(__file__).resolve().parents[2]
PDB = Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb"))
QUICK = dict(n_rotations=3, probe_rotations=2, retrieval_draws=1, mlp_probe=False)


def _build_store(out: Path) -> None:
    """60 unbound docking partners of BM5 (C-alpha clouds). The shared structures must be
    there: this test fails, never falls back to synthetic clouds, when they are missing."""
    files = sorted((PDB / "BM5-clean").glob("*_u.pdb.gz"))[:60]
    if len(files) < 40:
        pytest.fail(f"real structures not found: {len(files)} BM5-clean/*_u.pdb.gz in {PDB} (need 40); "
                    "set PROTEIN_CARE_TEST_PDB to the shared/pdb folder (see shared/pdb/README.md)", pytrace=False)
    from data_pipeline.build import build_store

    build_store(files, out, workers=1, progress=False, split_fractions=(0.6, 0.2, 0.2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    store, run = root / "store", root / "run"
    _build_store(store)
    code = main([
        "train", "--store", str(store), "--out", str(run), "--max-steps", "3", "--batch-size", "8",
        "--n-split", "2", "--hidden", "16", "--dim", "8", "--device", "cpu", "--no-progress", "--seed", "1",
    ])
    assert code == 0
    return store, run


def test_evaluate_run_reports_every_metric_next_to_the_baseline(trained):
    store, run = trained
    result = evaluate_run(run, None, split="test", **QUICK)
    assert result["baseline"] is not None
    for key in METRIC_KEYS:
        assert key in result and key in result["baseline"]
    # the baseline is the run's architecture at initialisation, evaluated with the same settings
    init = evaluate_run(run, None, split="test", checkpoint="init", include_baseline=False, **QUICK)
    assert init["checkpoint_step"] == 0 and init["baseline"] is None
    assert result["baseline"] == {key: init[key] for key in result["baseline"]}
    assert result["baseline"] != {key: result[key] for key in result["baseline"]}  # not the trained encoder
    assert result["store"] == str(store.resolve()) and result["split"] == "test"
    assert result["run_dir"] == str(run) and result["checkpoint_step"] == 3 and result["seed"] == 0
    assert result["n_clouds"] >= 2 and result["retrieval_chance"] == pytest.approx(1 / result["n_clouds"])
    assert result["probe_store"] == str(store.resolve()) and result["probe_clouds"] >= 2
    assert result["timings"]["run"]["total_s"] > 0
    assert 0 <= result["retrieval_top1"] <= 1 and 0 <= result["pc1_angle_deg_mean"] <= 90
    json.dumps(result, allow_nan=False)
    table = format_table(result)
    assert "pc1_angle_deg_mean" in table and "baseline" in table and "chance 57.3°" in table


def test_evaluate_run_is_deterministic_and_caches_the_baseline(trained):
    _, run = trained
    a = evaluate_run(run, None, split="val", seed=3, max_clouds=6, **QUICK)
    b = evaluate_run(run, None, split="val", seed=3, max_clouds=6, **QUICK)
    strip = lambda r: {k: v for k, v in r.items() if k != "timings"}  # noqa: E731
    assert strip(a) == strip(b)
    assert b["timings"]["baseline"].get("cached") is True
    early = evaluate_run(run, None, split="val", seed=3, max_clouds=6, checkpoint="step_1", include_baseline=False,
                         **QUICK)
    assert early["checkpoint_step"] == 1 and early["baseline"] is None
    assert early["wahba_error_mean"] != a["wahba_error_mean"]


def test_evaluate_cli_writes_the_json_and_a_table(trained, capsys, tmp_path):
    _, run = trained
    assert main(["evaluate", str(run), "--split", "all", "--n-rotations", "2", "--probe-rotations", "2",
                 "--max-clouds", "12", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "pc1_angle_deg_mean" in out and "metrics.json" in out
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["split"] == "all" and saved["n_clouds"] == 12 and saved["pc1_mlp_angle_deg_mean"] is not None
    custom = tmp_path / "m.json"
    assert main(["evaluate", str(run), "--out", str(custom), "--no-baseline", "--no-mlp", "--n-rotations", "2",
                 "--probe-rotations", "1", "--device", "cpu"]) == 0
    assert json.loads(custom.read_text())["baseline"] is None


def test_evaluate_cli_errors_name_the_problem(trained, capsys, tmp_path):
    _, run = trained
    assert main(["evaluate", str(tmp_path / "nope"), "--device", "cpu"]) == 2
    assert "not a protein-care run folder" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--store", str(tmp_path), "--device", "cpu"]) == 2
    assert "store" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(run), "--split", "bogus"])


def test_plot_cli_writes_a_self_contained_html(trained, capsys, tmp_path):
    store, run = trained
    out = tmp_path / "traj.html"
    args = ["plot", str(run), str(run), "--out", str(out), "--steps", "8", "--device", "cpu"]
    png = tmp_path / "traj.png"
    code = main(args + ["--png", str(png)])
    captured = capsys.readouterr()
    if png_export_available():
        assert code == 0 and png.is_file()
    else:
        assert code == 1 and "kaleido" in captured.err and not png.exists()
    html = out.read_text(encoding="utf-8")
    assert "plotly.js" in html and 'src="http' not in html
    assert "speed CV" in captured.out or "closure" in captured.out
    from data_pipeline.store import PointCloudStore

    ids = PointCloudStore(store).ids[:2]
    assert main(["plot", str(run), "--out", str(out), "--ids", *ids, "--steps", "6", "--view", "3d",
                 "--device", "cpu"]) == 0
    html = out.read_text(encoding="utf-8")
    assert ids[0] in html and "scatter3d" in html
    assert main(["plot", str(run), "--out", str(out), "--ids", "NOT_AN_ID", "--device", "cpu"]) == 2
    assert "NOT_AN_ID" in capsys.readouterr().err


def test_a_one_point_cloud_is_evaluated_as_one_without_a_principal_axis(trained, tmp_path):
    """``build-dataset --min-points 1`` keeps one-residue clouds: they must not stop the
    evaluation of a split; PC1 angles leave them out (no axis), as they do flat-spectrum clouds."""
    from data_pipeline.store import PointCloudStore
    from data_pipeline.store_writer import CloudRecord, write_store

    source = PointCloudStore(trained[0])
    picked = list(source.split("test"))[:5]
    records = [CloudRecord(source.ids[i], np.array(source[i]), np.array(source.features(i)), {"split": "test"})
               for i in picked]
    records.append(CloudRecord("ONE", np.array([[1.0, 2.0, 3.0]]), np.zeros(1, np.uint8), {"split": "test"}))
    write_store(records, tmp_path / "with_one_point")
    result = evaluate_run(trained[1], tmp_path / "with_one_point", split="test", **QUICK)
    assert result["n_clouds"] == len(picked) + 1
    assert result["pc1_well_defined_fraction"] <= len(picked) / (len(picked) + 1)

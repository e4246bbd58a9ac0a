"""The end-to-end demo and the comparison report (the claims it checks: test_claims.py)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from protein_care.cli import main
from protein_care.demo import BUDGET_TOLERANCE, DEMO_RUNS, DEMO_STEPS, TRADEOFF_LAMBDAS, fit_batch_size, slugify, steps_within_budget

REPO = Path(__file__).resolve().parents[2]


def shared_pdb() -> Path:
    root = Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb"))
    if not (root / "BM5-clean").is_dir():
        pytest.fail(f"real structures not found at {root}; set PROTEIN_CARE_TEST_PDB", pytrace=False)
    return root


def test_fit_batch_size_keeps_chunks_whole():
    assert fit_batch_size(950) == 64
    assert fit_batch_size(50, 64, 4) == 48
    with pytest.raises(ValueError, match="at least 8"):
        fit_batch_size(7, 64, 4)


def test_demo_trains_its_fixed_steps_unless_the_budget_cannot_fit_them(capsys):
    # a fast machine (or a GPU) does not train longer than the checked length
    assert steps_within_budget(50 * DEMO_STEPS, 10.0) == DEMO_STEPS
    assert steps_within_budget(DEMO_STEPS, 10.0) == DEMO_STEPS
    # an estimate a step or a few short (a CI machine, 1,199) keeps the checked length
    assert steps_within_budget(DEMO_STEPS - 1, 10.0) == DEMO_STEPS
    assert steps_within_budget(int(BUDGET_TOLERANCE * DEMO_STEPS), 10.0) == DEMO_STEPS
    assert "warning" not in capsys.readouterr().out
    # a slow one trains what fits, and says so
    assert steps_within_budget(700, 10.0) == 700
    said = capsys.readouterr().out
    assert "warning" in said and "700" in said and f"{DEMO_STEPS}" in said and "--minutes" in said


def test_demo_help_names_the_default_steps(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert f"{DEMO_STEPS:,}" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_demo_end_to_end_on_real_structures_then_compare(tmp_path, capsys):
    # 80 real BM5 unbound receptors (80 complexes), linked (never copied) into a folder laid out like shared/pdb
    corpus = tmp_path / "pdb" / "BM5-clean"
    corpus.mkdir(parents=True)
    for path in sorted((shared_pdb() / "BM5-clean").glob("*_r_u*"))[:80]:
        (corpus / path.name).symlink_to(path)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--pdb-dir", str(tmp_path / "pdb"), "--steps", "4", "--device", "cpu"]) == 0
    said = capsys.readouterr()
    store_lines = (said.out + said.err).split("[1/4]")[1].split("[2/4]")[0].splitlines()[1:]
    assert any("clouds written" in line for line in store_lines)
    assert all(line.startswith("  ") for line in store_lines if line.strip()), store_lines  # the build summary, indented

    results = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in results["runs"]]
    assert names == [name for name, _ in DEMO_RUNS]
    for run in results["runs"]:
        assert run["steps"] == 4
        assert 0 <= run["metrics"]["pc1_angle_deg_mean"] <= 90
        assert 0 <= run["metrics"]["retrieval_top1"] <= 1
        assert run["progress"][-1]["step"] == 4 and len(run["progress"]) >= 2
        assert (out / "trajectories" / f"{run['slug']}.npz").is_file()
        with np.load(results["embeddings"][run["name"]]) as embedded:  # every cloud of the store, by this run
            assert embedded["embeddings"].shape[0] == results["meta"]["clouds"] == len(embedded["ids"])
            assert json.loads(str(embedded["meta"]))["run_dir"].endswith(run["slug"])
    assert results["baseline"]["retrieval_top1"] is not None
    assert sorted(p["lam"] for p in results["tradeoff"]) == sorted([*TRADEOFF_LAMBDAS, dict(DEMO_RUNS)["CARE points"]["lam"]])
    assert results["claims"] and all(set(c) == {"claim", "holds", "evidence"} for c in results["claims"])
    care_runs = [r["name"] for r in results["runs"] if r["loss"] == "care"]
    assert [s["name"] for s in results["stability"]] == care_runs and len(care_runs) == 3
    assert math.isclose(results["pc1_chance_deg"], 57.2958, abs_tol=1e-3)
    page = (out / "report.html").read_text()
    assert "<script src=\"http" not in page and "plotly" in page.lower()
    assert "Did CARE keep the rotation during training?" in page
    for name in names:
        assert name in page

    # the step count for a budget comes from a timed CARE step on the same store
    from protein_care.demo import calibrate_steps

    quick = calibrate_steps(out / "store", seconds=0.01, n_runs=1.0, seed=0, device="cpu",
                            batch_size=results["meta"]["batch size"], log=lambda *a: None)
    generous = calibrate_steps(out / "store", seconds=600.0, n_runs=1.0, seed=0, device="cpu",
                               batch_size=results["meta"]["batch size"], log=lambda *a: None)
    assert quick == 20 and generous > quick

    # a second run on the store just built (--store) with the same settings reuses the trained runs
    assert main(["demo", "--out", str(out), "--store", str(out / "store"), "--steps", "4", "--device", "cpu",
                 "--no-tradeoff"]) == 0
    assert json.loads((out / "results.json").read_text())["meta"]["store"] == str(out / "store")

    compared = tmp_path / "compare"
    runs = [f"CARE={out / 'runs' / slugify('CARE points')}", f"SimCLR={out / 'runs' / 'simclr'}"]
    assert main(["compare", *runs, "--out", str(compared), "--device", "cpu", "--steps", "8"]) == 0
    report = json.loads((compared / "results.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["CARE", "SimCLR"]
    assert [s["name"] for s in report["stability"]] == ["CARE"]
    assert (compared / "report.html").is_file()


def test_compare_names_a_missing_run(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err


def test_demo_rejects_bad_arguments(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "o"), "--store", str(tmp_path / "no-store")]) == 2
    assert "--store" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "o"), "--store", "s", "--pdb-dir", "p"]) == 2
    assert "--store and --pdb-dir" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "1abc.pdb").write_text("HEADER    not a structure\nEND\n")
    assert main(["demo", "--out", str(tmp_path / "o"), "--pdb-dir", str(tmp_path / "bad"), "--workers", "1"]) == 2
    assert "--pdb-dir: no clouds" in capsys.readouterr().err

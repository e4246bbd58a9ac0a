"""`protein-care compare` end to end on tiny CLI-trained runs of real structures: the
store it evaluates on, NAME=RUN labels, duplicate labels, the claims note and runs
trained on different stores (fixture: ``cli_runs`` in conftest.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from protein_care.cli import main

FAST = ["--steps", "4", "--device", "cpu"]


@pytest.fixture(autouse=True)
def in_base_folder(cli_runs, monkeypatch):
    """Run from the folder the runs were trained from (where their relative `store`
    resolves), so that only the first test depends on the recorded absolute path."""
    monkeypatch.chdir(cli_runs.base)


def results(out) -> dict:
    return json.loads((out / "results.json").read_text())


def test_compare_evaluates_on_the_runs_recorded_store_from_another_folder(cli_runs, tmp_path, monkeypatch, capsys):
    """The run was trained with `--store store` from its base folder; compare runs from
    a folder holding an unrelated `store` (one cloud) and must still use the recorded
    absolute store."""
    assert json.loads((cli_runs.care / "config.json").read_text())["store"] == "store"
    shutil.copytree(cli_runs.store1, tmp_path / "store")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(cli_runs.care), f"simclr={cli_runs.simclr}", "--out", "cmp", *FAST]) == 0
    err = capsys.readouterr().err
    report = results(tmp_path / "cmp")
    assert report["meta"]["store"] == str(cli_runs.store.resolve()) and report["meta"]["test clouds"] == 2
    assert [(r["name"], r["run_dir"]) for r in report["runs"]] == [("care", str(cli_runs.care)),
                                                                  ("simclr", str(cli_runs.simclr))]
    assert sorted(p.name for p in (tmp_path / "cmp" / "trajectories").iterdir()) == ["care.npz", "simclr.npz"]
    # no run is named as the claims expect: the note says which names enable them
    assert report["claims"] == []
    assert "note: no claim of the paper was checked" in err
    assert "CARE" in err and "SimCLR" in err and "NAME=RUN" in err
    assert any("no claim of the paper was checked" in n for n in report["notes"])
    assert "no claim of the paper was checked" in (tmp_path / "cmp" / "report.html").read_text()


def test_compare_takes_an_existing_folder_whose_path_holds_equals_whole(cli_runs, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", str(cli_runs.care_eq), f"simclr={cli_runs.simclr}", "--out", str(out), *FAST]) == 0
    assert [(r["name"], r["run_dir"]) for r in results(out)["runs"]] == [("care", str(cli_runs.care_eq)),
                                                                        ("simclr", str(cli_runs.simclr))]


def test_compare_name_is_split_at_the_first_equals_sign(cli_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", f"CARE={cli_runs.care_eq}", f"SimCLR={cli_runs.simclr}", "--out", str(out), *FAST]) == 0
    report = results(out)
    assert [(r["name"], r["run_dir"]) for r in report["runs"]] == [("CARE", str(cli_runs.care_eq)),
                                                                  ("SimCLR", str(cli_runs.simclr))]
    assert report["claims"] and report["notes"] == []  # named as the claims expect: checked, no note
    assert "note:" not in capsys.readouterr().err


def test_compare_refuses_two_runs_with_the_same_label(cli_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(cli_runs.care), str(cli_runs.care_copy), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: RUN: two runs have the same label 'care'")
    assert str(cli_runs.care) in err and str(cli_runs.care_copy) in err and "NAME=RUN" in err
    # the suggested labels hold no '=' (they would be split there) and are accepted as they are
    assert f"x-care={cli_runs.care}" in err and f"y-care={cli_runs.care_copy}" in err
    assert not out.exists()
    # a suggested label holds no '=' (the item would be split there)
    assert main(["compare", str(cli_runs.care_eq), str(cli_runs.care_copy), "--out", str(out), *FAST]) == 2
    assert f"lam-1-care={cli_runs.care_eq}" in capsys.readouterr().err and not out.exists()


def test_compare_refuses_labels_with_the_same_file_name(cli_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", f"CARE points={cli_runs.care}", f"care-points={cli_runs.simclr}", "--out", str(out),
                 *FAST]) == 2
    err = capsys.readouterr().err
    assert "same file name 'care-points' ('CARE points' and 'care-points')" in err and "NAME=RUN" in err
    assert not out.exists()


def test_compare_help_says_which_names_enable_the_claims(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "claims are checked for a run named CARE" in text and "against one named SimCLR" in text
    assert "NAME=RUN" in text and "first '='" in text


def test_compare_refuses_runs_of_different_stores_without_store(cli_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(cli_runs.care), str(cli_runs.heavy), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the runs were trained on different stores")
    assert str(cli_runs.heavy) in err and str(cli_runs.store_heavy.resolve()) in err and "heavy atoms" in err
    assert "Pass --store STORE" in err and not out.exists()


def test_compare_with_store_warns_about_a_run_of_another_store(cli_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(cli_runs.care), str(cli_runs.heavy), "--store", str(cli_runs.store),
                 "--out", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert f"warning: RUN {cli_runs.heavy}: trained on the store {cli_runs.store_heavy.resolve()}" in err
    assert "heavy atoms" in err and f"warning: RUN {cli_runs.care}" not in err
    notes = results(out)["notes"]
    assert f"heavy ({cli_runs.heavy}): trained on another store (heavy atoms); shown: CA" in notes


def test_claims_note_names_the_labels_that_enable_the_claims():
    from protein_care.claims import claims_note

    assert claims_note(["CARE", "SimCLR"]) is None and claims_note(["L_unif", "CARE split", "SimCLR"]) is None
    for names in (["care", "simclr"], ["CARE"], ["SimCLR", "L_unif"], []):
        note = claims_note(names)
        assert note.startswith("no claim of the paper was checked")
        assert "named CARE (or 'CARE points', 'CARE split') against one named SimCLR" in note and "NAME=RUN" in note

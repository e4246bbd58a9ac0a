"""`protein-care plot` on runs of different stores and on a store with fewer clouds than
--n-proteins, and `train`'s message for a split too small for any batch, end to end on
tiny CLI-trained runs of real structures (fixture: ``cli_runs`` in conftest.py)."""

from __future__ import annotations

from protein_care.cli import main

from .tiny_cli_runs import TINY_TRAIN

FAST = ["--steps", "4", "--device", "cpu"]


def test_plot_refuses_runs_of_different_stores_without_store(cli_runs, tmp_path, capsys):
    html = tmp_path / "p.html"
    assert main(["plot", str(cli_runs.care), str(cli_runs.heavy), "--out", str(html), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the runs were trained on different stores")
    assert str(cli_runs.heavy) in err and str(cli_runs.store_heavy.resolve()) in err and "heavy atoms" in err
    assert "CA atoms" in err and "Pass --store STORE" in err and not html.exists()


def test_plot_with_store_warns_and_marks_the_panel_of_a_run_of_another_store(cli_runs, tmp_path, capsys):
    html = tmp_path / "p.html"
    assert main(["plot", str(cli_runs.care), str(cli_runs.heavy), "--store", str(cli_runs.store),
                 "--out", str(html), "--n-proteins", "1", *FAST]) == 0
    out, err = capsys.readouterr()
    assert f"warning: RUN {cli_runs.heavy}: trained on the store {cli_runs.store_heavy.resolve()}" in err
    assert "its panel is marked" in err and f"warning: RUN {cli_runs.care}" not in err
    page = html.read_text()
    assert "trained on another store (heavy atoms); shown: CA" in page
    assert page.count("trained on another store") == page.count("heavy (care, step 3)")  # only the heavy panel
    assert "heavy (care, step 3) ⚠" in out


def test_plot_on_a_store_with_fewer_clouds_than_n_proteins_draws_them_with_a_note(cli_runs, tmp_path, capsys):
    html = tmp_path / "p.html"
    assert main(["plot", str(cli_runs.care), "--store", str(cli_runs.store1), "--out", str(html), *FAST]) == 0
    out, err = capsys.readouterr()
    assert f"note: --n-proteins 3: the store {cli_runs.store1} holds only 1 cloud(s); drawing it" in err
    assert "--ids" in err and html.is_file()
    (line,) = [x for x in out.splitlines() if x.startswith("proteins: ")]
    assert line.count(",") == 0  # one protein drawn


def test_train_on_a_split_too_small_for_any_batch_says_so(cli_runs, tmp_path, capsys):
    for split, n in (("all", 1), ("val", 0)):
        assert main(["train", "--store", str(cli_runs.store1), "--out", str(tmp_path / split), "--split", split,
                     *TINY_TRAIN]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: split {split!r} has {n} cloud(s): too small to train on"), err
        assert "--n-split 2 × 1 process(es) = 4 clouds" in err and "lower --batch-size" not in err


def test_train_with_a_batch_larger_than_the_split_names_the_largest_that_fits(cli_runs, tmp_path, capsys):
    assert main(["train", "--store", str(cli_runs.store), "--out", str(tmp_path / "r"), *TINY_TRAIN,
                 "--batch-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size 16 × 1 process(es) is more than the 12 clouds of split 'train'" in err
    assert "lower --batch-size to at most 12" in err

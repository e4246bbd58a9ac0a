"""``protein-care inspect-store``: a store's summary, and --verify catching damage."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from protein_care.cli import main

FILES = ["biotite/1l2y.pdb.gz", "biotite/1aki.cif.gz", "plip/1hii.pdb.gz", "plip/1hvi.pdb.gz"]


@pytest.fixture
def store(pdb_dir, tmp_path):
    out = tmp_path / "store"
    args = ["build-dataset", "--out", str(out), "--workers", "1", "--no-progress", "--split-identity", "0.4"]
    assert main([*args, *(x for f in FILES for x in ("--source", str(pdb_dir / f)))]) == 0
    return out


def test_a_store_is_summarised_with_how_it_was_built(store, capsys):
    capsys.readouterr()
    assert main(["inspect-store", str(store), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "(opened; --verify reads every file)" in text
    assert "time" not in text.split()  # a build's time means nothing here
    assert re.search(r"splits +train \d+, val \d+, test \d+", text)  # in split order, as a build prints them
    for words in ("clouds written    4", "split components  3, largest 2 clouds (50%, 1HII)",
                  "selection         ca", "split identity    0.4", "source files      4",
                  "points per cloud  min 20, median"):
        assert words in text, words
    assert main(["inspect-store", str(store), "--verify", "--no-progress"]) == 0
    assert "verified: every file matches its sha256" in capsys.readouterr().out


def test_json_gives_the_same_facts_for_scripts(store, capsys):
    capsys.readouterr()
    assert main(["inspect-store", str(store), "--json", "--verify", "--no-progress"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["values_verified"] is facts["checksums_verified"] is True and facts["clouds"] == 4 and sum(facts["splits"].values()) == 4
    assert facts["split_components"] == {"count": 3, "largest": 2, "largest_key": "1HII", "oversized": 0, "oversized_clouds": 0}
    assert facts["config"]["split_identity"] == 0.4 and facts["config"]["selection"] == "ca"
    assert facts["points_per_cloud"]["min"] >= 20 and facts["left_out"] == 0


def test_verify_finds_a_changed_value_that_a_plain_open_cannot(store, capsys):
    coords = np.load(store / "coords.npy", mmap_mode="r+")
    coords[3, 1] += 1.0  # same size, finite: only the checksum sees it
    coords.flush()
    del coords
    assert main(["inspect-store", str(store), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["inspect-store", str(store), "--verify", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "damaged store: coords.npy changed since it was written (sha256 mismatch)" in err


def test_not_a_store_exits_1_and_a_missing_path_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["inspect-store", str(tmp_path / "empty")]) == 1
    assert "incomplete store, missing coords.npy" in capsys.readouterr().err
    assert main(["inspect-store", str(tmp_path / "nope")]) == 2
    assert "argument STORE: not found" in capsys.readouterr().err

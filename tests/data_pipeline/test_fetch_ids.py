"""PDB ID validation, ID files and the wwPDB mirror layout (data_pipeline.rcsb_ids)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_pipeline.rcsb_ids import (
    mirror_candidates,
    normalize_pdb_id,
    parse_id_lines,
    read_ids_file,
    remote_file_name,
    split_valid_ids,
)

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1abc", "1ABC"), ("1ABC", "1ABC"), ("4hHb", "4HHB"), (" 1l2y\n", "1L2Y"),
     ("pdb_00001abc", "1ABC"), ("PDB_00004HHB", "4HHB")],
)
def test_accepted_ids_are_normalised_to_upper_four_characters(raw: str, expected: str) -> None:
    assert normalize_pdb_id(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "abc", "1abcd", "0abc", "abcd", "1ab-", "1ab c", "pdb_1abc", "pdb_0001abcd",
            "pdb_00001ab", "1abc.cif", "../1abc"],
)
def test_rejected_ids_raise_with_the_input_named(raw: str) -> None:
    with pytest.raises(ValueError, match="PDB ID|extended"):
        normalize_pdb_id(raw)
    try:
        normalize_pdb_id(raw)
    except ValueError as exc:
        assert repr(raw) in str(exc)


@given(st.sampled_from("123456789"), st.text(alphabet=ALNUM, min_size=3, max_size=3))
def test_normalisation_is_idempotent_and_case_insensitive(first: str, rest: str) -> None:
    pdb_id = normalize_pdb_id(first + rest)
    assert pdb_id == (first + rest).upper()
    assert normalize_pdb_id(pdb_id.lower()) == pdb_id
    assert normalize_pdb_id(f"pdb_0000{pdb_id.lower()}") == pdb_id


def test_split_keeps_order_drops_duplicates_and_reports_rejects() -> None:
    valid, rejected = split_valid_ids(["1abc", "2XYZ", "1ABC", "nope", "pdb_00002xyz", "3def"])
    assert valid == ["1ABC", "2XYZ", "3DEF"]
    assert [raw for raw, _ in rejected] == ["nope"]


def test_id_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("# header\n1abc\n\n2XYZ  # trailing comment\n3def, 4ghi\n   \n#5jkl\n")
    assert read_ids_file(path) == ["1abc", "2XYZ", "3def", "4ghi"]
    assert parse_id_lines(["1abc 2abc", "#x"]) == ["1abc", "2abc"]


def test_remote_names_follow_rcsb_layout() -> None:
    assert remote_file_name("1ABC", "cif") == "1ABC.cif.gz"
    assert remote_file_name("1ABC", "pdb") == "1ABC.pdb.gz"
    with pytest.raises(ValueError, match="format"):
        remote_file_name("1ABC", "mmtf")


def test_mirror_layout_is_divided_by_middle_two_lowercase_characters(tmp_path: Path) -> None:
    assert mirror_candidates(tmp_path, "1ABC", "cif")[0] == tmp_path / "mmCIF/ab/1abc.cif.gz"
    assert mirror_candidates(tmp_path, "1ABC", "pdb")[0] == tmp_path / "pdb/ab/pdb1abc.ent.gz"
    whole_archive = mirror_candidates(tmp_path, "4HHB", "cif")[1]
    assert whole_archive == tmp_path / "data/structures/divided/mmCIF/hh/4hhb.cif.gz"


def test_fetch_modules_import_neither_torch_nor_protein_care() -> None:
    code = (
        "import sys, data_pipeline.fetch, data_pipeline.rcsb_search;"
        "bad = sorted({'torch', 'protein_care'} & set(sys.modules)); print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr

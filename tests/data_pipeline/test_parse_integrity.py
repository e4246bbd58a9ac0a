"""Files the two backends used to read differently: several data blocks, a truncated
``_atom_site`` loop, blank chain IDs and atom names with inner blanks. Both backends
must give the same cloud, or both the same clear reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_pipeline.parity import compare_backends
from data_pipeline.parse import read_structure, try_read_structure
from data_pipeline.cif_scan import atom_site_loop
from data_pipeline.structure import ParseFailure

BACKENDS = ("gemmi", "biopython")


def _text(pdb_dir: Path, rel: str) -> bytes:
    return gzip.decompress((pdb_dir / rel).read_bytes())


@pytest.fixture(scope="module")
def a7g(pdb_dir) -> bytes:
    return _text(pdb_dir, "biopython/1A7G.cif.gz")


def _failures(path: Path) -> list[str]:
    results = [try_read_structure(path, backend=b) for b in BACKENDS]
    assert all(isinstance(r, ParseFailure) for r in results), results
    return [r.reason for r in results]


# --------------------------------------------------------------------- data blocks

def test_two_blocks_with_coordinates_are_refused_by_both(pdb_dir, a7g, tmp_path):
    path = tmp_path / "twoblocks.cif"
    path.write_bytes(a7g + _text(pdb_dir, "biotite/1aki.cif.gz"))  # cat a.cif b.cif
    for reason in _failures(path):
        assert reason == "2 data blocks with coordinates (1A7G, 1AKI); split the file"


@pytest.mark.parametrize("first", [True, False])
def test_a_block_without_coordinates_is_ignored(a7g, tmp_path, first):
    extra = b"data_XTRA\n_entry.id XTRA\n_exptl.method 'SOLUTION NMR'\n#\n"
    path = tmp_path / "extra.cif"
    path.write_bytes(extra + a7g if first else a7g + extra)
    clouds = [read_structure(path, backend=b, selection="all") for b in BACKENDS]
    for cloud in clouds:
        assert cloud.id == "1A7G" and cloud.meta["method"] == "X-RAY DIFFRACTION"
    assert len(clouds[0]) == len(clouds[1]) > 600
    assert compare_backends(path, ("ca", "all")) == []


# ---------------------------------------------------------------------- truncation

def test_reviewers_cut_mmcif_is_refused_by_both_with_one_reason(a7g, tmp_path):
    path = tmp_path / "cut.cif"
    path.write_bytes(a7g[: a7g.index(b"ATOM   41 ") + 11])  # "ATOM   41  " then EOF
    reasons = _failures(path)
    assert reasons[0] == reasons[1]
    assert reasons[0].startswith("truncated mmCIF: the _atom_site loop ends inside a row")


@pytest.mark.timeout(300)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(min_value=0.0, max_value=1.0))
def test_mmcif_cut_anywhere_in_atom_site_gives_the_same_answer(a7g, tmp_path, where):
    _, start, end = atom_site_loop(a7g)
    path = tmp_path / "cut.cif"
    path.write_bytes(a7g[: start + int(where * (end - start))])
    assert compare_backends(path, ("ca", "all")) == []


def _rows_over_two_lines(text: bytes) -> bytes:
    """``text`` with every ``_atom_site`` row split after its tenth value (valid CIF)."""
    _, start, end = atom_site_loop(text)
    rows = []
    for line in text[start:end].splitlines():
        values = line.split()
        rows.append(b" ".join(values[:10]) + b"\n" + b" ".join(values[10:]) + b"\n")
    return text[:start] + b"".join(rows) + text[end:]


@pytest.mark.parametrize("values_left", [2, 19])
def test_rows_over_two_lines_cut_inside_a_row_are_refused_by_both(a7g, tmp_path, values_left):
    whole = _rows_over_two_lines(a7g)
    path = tmp_path / "two_lines.cif"
    path.write_bytes(whole)
    assert compare_backends(path, ("all",)) == []  # the layout itself reads fine
    row = whole.index(b"\nATOM 41 ") + 1
    if values_left == 2:  # "ATOM 41": Biopython kept the 40 rows before it
        cut = row + len(b"ATOM 41")
    else:  # row 40 without its last two values: Biopython failed with an IndexError
        cut = whole.rindex(b" ", 0, row - 4)
    path.write_bytes(whole[:cut])
    reasons = _failures(path)
    assert "Wrong number of values in loop" in reasons[0]
    assert "the _atom_site loop ends inside a row" in reasons[1]


# ------------------------------------------------- blank chains, inner-blank names

@pytest.mark.parametrize(
    ("rel", "key"),
    [
        ("Prot-DNABenchmark/1BY4.pdb.gz", ("", 1330, "", "ZN", "ZN")),  # blank chain column
        ("BM5-clean/2PCC_l_u.pdb.gz", ("B", 1, "", "HEM", "N A")),  # atom name " N A"
    ],
)
def test_blank_chains_and_inner_blank_atom_names_are_normalised(pdb_dir, rel, key):
    for backend in BACKENDS:
        cloud = read_structure(pdb_dir / rel, backend=backend, selection="all")
        keys = set(zip(cloud.chain_id.tolist(), cloud.res_seq.tolist(), cloud.icode.tolist(),
                       cloud.res_name.tolist(), cloud.atom_name.tolist()))
        assert key in keys, backend
    assert compare_backends(pdb_dir / rel, ("all",)) == []

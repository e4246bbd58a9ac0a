"""Verification of structure files: gzip CRC, size cap, parses, complete, the requested entry
(data_pipeline.fetch_verify)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.fetch_verify import (
    EntryMismatch,
    VerificationError,
    verify_structure_bytes,
    verify_structure_file,
)
from data_pipeline.cif_scan import atom_site_loop

try:
    from . import loopback_server as lb
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    import loopback_server as lb

pytestmark = pytest.mark.skipif(not lb.have_shared_pdb(), reason="shared/pdb not found")


@pytest.mark.parametrize("name", sorted(lb.REAL_FILES))
def test_real_gzipped_entries_verify(name: str) -> None:
    fmt = name.split(".")[1]
    assert verify_structure_bytes(lb.real_file_bytes(name), fmt) > 100


def test_gzipped_plain_pdb_file_verifies(tmp_path: Path) -> None:
    path = tmp_path / "DISO.pdb.gz"
    path.write_bytes(lb.gzip_plain_file("biopython/disordered.pdb"))
    assert verify_structure_file(path, "pdb") >= 1


def test_truncated_gzip_is_rejected() -> None:
    data = lb.real_file_bytes("1AKI.cif.gz")
    with pytest.raises(VerificationError, match="truncated"):
        verify_structure_bytes(data[: len(data) // 2], "cif")


def test_bad_crc_is_rejected() -> None:
    data = bytearray(lb.real_file_bytes("1AKI.cif.gz"))
    data[-8] ^= 0xFF  # first byte of the CRC-32 in the gzip trailer
    with pytest.raises(VerificationError, match="corrupt gzip"):
        verify_structure_bytes(bytes(data), "cif")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty file"),
        (lb.HTML_PAGE, "not a gzip stream"),
        (gzip.compress(b""), "empty"),
        (gzip.compress(lb.HTML_PAGE), "does not parse|no atoms"),
        (gzip.compress(b"data_x\n_cell.length_a 10\n"), "no atoms"),
    ],
)
def test_non_structures_are_rejected_for_cif(data: bytes, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        verify_structure_bytes(data, "cif")


def test_html_is_not_a_pdb_file_either() -> None:
    with pytest.raises(VerificationError, match="no atoms"):
        verify_structure_bytes(gzip.compress(lb.HTML_PAGE), "pdb")


def test_a_cif_file_is_not_accepted_as_pdb_format() -> None:
    with pytest.raises(VerificationError):
        verify_structure_bytes(lb.real_file_bytes("1AKI.cif.gz"), "pdb")


def test_unknown_format_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="format"):
        verify_structure_bytes(lb.real_file_bytes("1AKI.cif.gz"), "mmtf")


def test_missing_file_is_a_verification_error(tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="cannot read"):
        verify_structure_file(tmp_path / "nope.cif.gz", "cif")


# -- which entry, and cut at a row boundary ------------------------------------------

def _text(name: str) -> bytes:
    return gzip.decompress(lb.real_file_bytes(name))


@pytest.mark.parametrize("name", sorted(lb.REAL_FILES))
def test_the_file_must_be_the_requested_entry(name: str) -> None:
    data, fmt, entry = lb.real_file_bytes(name), name.split(".")[1], name.split(".")[0]
    for same in (entry, entry.lower(), f"pdb_0000{entry.lower()}"):
        assert verify_structure_bytes(data, fmt, same) > 100
    other = "1BNA" if entry != "1BNA" else "1AKI"
    with pytest.raises(EntryMismatch, match=f"entry '{entry}'.*not the requested {other}"):
        verify_structure_bytes(data, fmt, other)


def test_a_file_without_an_id_is_not_accepted_as_an_entry() -> None:
    data = lb.gzip_plain_file("biopython/disordered.pdb")  # no HEADER record
    assert verify_structure_bytes(data, "pdb") >= 1
    with pytest.raises(VerificationError, match="no HEADER ID code"):
        verify_structure_bytes(data, "pdb", "1ABC")


@settings(max_examples=40, deadline=None)
@given(where=st.floats(min_value=0.0, max_value=1.0), name=st.sampled_from(["1A7G.cif.gz", "1AKI.cif.gz"]))
def test_atom_site_loop_cut_anywhere_is_rejected_even_at_a_row_boundary(where: float, name: str) -> None:
    text = _text(name)
    loop = atom_site_loop(text)
    assert loop is not None and loop[2] < len(text)
    rows = [loop[1]] + [i + 1 for i in range(loop[1], loop[2]) if text[i] == 10]  # line starts
    cut = rows[int(where * (len(rows) - 1))]  # a row boundary (the last: just before '#')
    for end in (cut,) if cut == loop[2] else (cut, cut + 7):  # and a cut inside the row
        with pytest.raises(VerificationError, match="row boundary|Wrong number|no atoms"):
            verify_structure_bytes(gzip.compress(text[:end]), "cif")


def test_cif_ending_right_after_its_closed_atom_site_loop_passes() -> None:
    text = _text("1AKI.cif.gz")  # _atom_site is this file's last category
    assert text.rstrip().endswith(b"\n#")
    assert verify_structure_bytes(gzip.compress(text.rstrip()), "cif", "1AKI") > 100


def test_pdb_file_cut_at_a_line_boundary_is_rejected() -> None:
    text = _text("1AKI.pdb.gz")
    cut = text.index(b"\nATOM", len(text) // 2) + 1
    with pytest.raises(VerificationError, match="END record"):
        verify_structure_bytes(gzip.compress(text[:cut]), "pdb")


def test_two_coordinate_blocks_are_rejected() -> None:
    data = gzip.compress(_text("1A7G.cif.gz") + _text("1AKI.cif.gz"))
    with pytest.raises(VerificationError, match=r"2 data blocks with coordinates \(1A7G, 1AKI\)"):
        verify_structure_bytes(data, "cif")


def test_decompressed_size_is_capped() -> None:
    data = lb.real_file_bytes("1AKI.cif.gz")
    assert verify_structure_bytes(data, "cif", max_bytes=len(_text("1AKI.cif.gz"))) > 100
    with pytest.raises(VerificationError, match="more than 100000 bytes"):
        verify_structure_bytes(data, "cif", max_bytes=100_000)
    bomb = gzip.compress(b" " * 50_000_000)  # 50 MB of blanks in 50 kB
    with pytest.raises(VerificationError, match="more than"):
        verify_structure_bytes(bomb, "cif", max_bytes=10_000_000)

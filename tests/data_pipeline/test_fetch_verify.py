"""Verification of structure files: gzip CRC, non-empty, parses (data_pipeline.fetch_verify)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from data_pipeline.fetch_verify import (
    VerificationError,
    verify_structure_bytes,
    verify_structure_file,
)

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

"""Verification of a large mmCIF in slices of its _atom_site rows (data_pipeline.fetch_verify,
review finding 5): the same atom count and the same refusals as parsing the whole text."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import gemmi
import pytest

from data_pipeline import fetch_verify
from data_pipeline.cif_scan import atom_site_loop
from data_pipeline.fetch_verify import VerificationError, verify_structure_bytes

try:
    from . import loopback_server as lb
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    import loopback_server as lb

pytestmark = pytest.mark.skipif(not lb.have_shared_pdb(), reason="shared/pdb not found")

WHOLE = 1 << 40  # a slice larger than any file: the whole text in one gemmi parse


def outcome(monkeypatch, text: bytes, slice_bytes: int, pdb_id: str | None = None) -> tuple:
    """("ok", atoms) or ("error", exception type, message) of verifying ``text``."""
    monkeypatch.setattr(fetch_verify, "_SLICE_BYTES", slice_bytes)
    try:
        return "ok", verify_structure_bytes(gzip.compress(text, mtime=0), "cif", pdb_id)
    except VerificationError as exc:
        return "error", type(exc), str(exc)


def sliced_used(monkeypatch, text: bytes, slice_bytes: int) -> bool:
    monkeypatch.setattr(fetch_verify, "_SLICE_BYTES", slice_bytes)
    return fetch_verify._parse_cif_sliced(text) is not None


def cif_files() -> list[Path]:
    root = lb.shared_pdb_dir()
    return sorted(p for p in root.rglob("*.cif.gz") if p.stat().st_size < 400_000)


def _text(name: str) -> bytes:
    return gzip.decompress(lb.real_file_bytes(name))


@pytest.mark.parametrize("path", cif_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_slices_give_the_whole_parse_result_on_real_files(monkeypatch, path: Path) -> None:
    text = gzip.decompress(path.read_bytes())
    whole = outcome(monkeypatch, text, WHOLE)
    assert outcome(monkeypatch, text, 4000) == whole
    if whole[0] == "ok":
        assert whole[1] == sum(m.count_atom_sites() for m in gemmi.read_structure(str(path)))


def test_the_sliced_path_is_taken_for_a_large_loop(monkeypatch) -> None:
    text = _text("1A7G.cif.gz")
    loop = atom_site_loop(text)
    rows = loop[2] - loop[1]
    assert sliced_used(monkeypatch, text, rows // 10)
    assert not sliced_used(monkeypatch, text, rows // 2)  # two slices or fewer: one parse


def _rows(text: bytes) -> tuple[int, int, list[int]]:
    """(start, end, start of each row) of the _atom_site loop (one row a line)."""
    _, start, end = atom_site_loop(text)
    return start, end, [start] + [i + 1 for i in range(start, end - 1) if text[i] == 10]


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_damaged_row_is_refused_with_the_whole_parse_message(monkeypatch, where: float) -> None:
    text = _text("1A7G.cif.gz")
    _, _, rows = _rows(text)
    at = rows[int(where * (len(rows) - 1))]
    line_end = text.index(b"\n", at)
    short_row = text[:at] + re.sub(rb"\s+\S+\s*$", b"", text[at:line_end]) + text[line_end:]  # one value less
    bad_number = text[:at] + re.sub(rb"^(\S+\s+)\S+", rb"\1x7", text[at:line_end]) + text[line_end:]
    for damaged in (short_row, bad_number):
        whole = outcome(monkeypatch, damaged, WHOLE)
        assert outcome(monkeypatch, damaged, 1500) == whole
    assert outcome(monkeypatch, short_row, WHOLE)[0] == "error"


@pytest.mark.parametrize("where", [0.3, 0.7, 1.0])
def test_a_cut_file_is_refused_with_the_whole_parse_message(monkeypatch, where: float) -> None:
    text = _text("1A7G.cif.gz")
    _, _, rows = _rows(text)
    cut = rows[int(where * (len(rows) - 1))]
    for stop in (cut, cut + 9):
        whole = outcome(monkeypatch, text[:stop], WHOLE)
        assert whole[0] == "error"
        assert outcome(monkeypatch, text[:stop], 1500) == whole


def test_a_row_over_two_lines_and_text_fields_give_the_same_result(monkeypatch) -> None:
    text = _text("1A7G.cif.gz")
    _, _, rows = _rows(text)
    at = rows[len(rows) // 2]
    split = text[:at] + text[at:].replace(b" ", b"\n", 3)  # one row over several lines: valid CIF
    assert outcome(monkeypatch, split, 1500) == outcome(monkeypatch, split, WHOLE)
    assert outcome(monkeypatch, split, WHOLE)[0] == "ok"
    first = text.index(b"\n", at)
    field = text[:first] + b"\n;\n" + b"\n;" + text[first:]  # not valid: a text field too many
    assert not sliced_used(monkeypatch, field, 1500)  # rows may span lines: never sliced
    assert outcome(monkeypatch, field, 1500) == outcome(monkeypatch, field, WHOLE)


def test_blocks_give_the_same_result(monkeypatch) -> None:
    a, b = _text("1A7G.cif.gz"), _text("1AKI.cif.gz")
    two = a + b  # two coordinate blocks: refused, same message
    assert outcome(monkeypatch, two, 1500) == outcome(monkeypatch, two, WHOLE)
    assert outcome(monkeypatch, two, WHOLE)[2].startswith("2 data blocks with coordinates")
    header_only = b"data_HEAD\n_cell.length_a 10\n#\n" + a  # the first block holds no atoms
    assert outcome(monkeypatch, header_only, 1500) == outcome(monkeypatch, header_only, WHOLE)
    assert outcome(monkeypatch, a, 1500, "1A7G") == outcome(monkeypatch, a, WHOLE, "1A7G")

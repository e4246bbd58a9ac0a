"""Is this a usable structure file? Checks for downloaded and cached ``.gz`` files.

A file passes only when

1. it is a complete gzip stream (decompressed in full, with a size cap, so the CRC-32
   and length trailer are checked and a gzip bomb is refused);
2. it decompresses to something non-empty;
3. gemmi parses that text as a structure with at least one atom (gemmi also refuses a
   loop whose values do not fill whole rows, e.g. ``_atom_site`` cut inside a row);
4. it is complete as the wwPDB writes its files, so that a text cut at a row boundary
   and then (re)compressed fails too: mmCIF has one data block with ``_atom_site``, and
   that loop is closed (by ``#``, another category or block) instead of running into
   the end of the file; PDB format ends with its mandatory ``END`` record;
5. when the caller names the entry (``pdb_id``), it is that entry: the mmCIF block name
   and ``_entry.id``, or the ID code of the PDB ``HEADER`` record (what RCSB and the
   wwPDB mirrors write), equal the requested ID, case-insensitively.

A non-empty file is not a valid one: an HTML error page served with status 200, a
truncated transfer, a file cut by a killed process and another entry's file all fail.

Check 4 is stricter than the parser (:mod:`data_pipeline.sniff`), which also reads
files of other writers (Biopython, PyMOL) that end right after the last atom row: from
the content alone such a file cannot be told from one cut at a row boundary, but every
file the fetcher downloads comes from the wwPDB, whose writer closes every category.

**Memory.** gemmi keeps every value of a CIF document as a string, and its tokenizer
peaks near twice the finished document: parsed whole, a 1.03 M-atom mmCIF (79 MB of
text) peaked at 1,184 MB, about 14 times the text, per fetch worker. So the rows of a
large ``_atom_site`` loop (more than twice :data:`_SLICE_BYTES`, one tag a line, no
``;`` text field) are given to gemmi a slice at a time, cut at line ends: the rest of
the file with the first slice is parsed and built as before (every category, block and
check 4), then each other slice of rows under the loop's own tags; the atom sites are
summed (gemmi makes one atom per row). Every byte is still parsed by gemmi in its own
loop, so the same files pass; should any part fail, the whole text is parsed again and
the file is refused with the same gemmi message as a whole parse gives. Measured with
:func:`verify_structure_bytes`, one fresh process per run (peak RSS from ``getrusage``,
CPU time), on synthetic mmCIF files written by gemmi with the chains of shared/pdb's
``pdbtbx/6wlb.cif.gz`` repeated: 1.03 M atoms (17 MB gzip): peak 1,184 MB before, 264 MB
now (52 MB of it before verifying: about 2.7 times the text), CPU 2.3 s before, 2.1 s
now; 207 k atoms (3.4 MB gzip): 214 MB before, 190 MB now.

This module uses gemmi directly on purpose: it answers only "does this parse", and stays
independent of :mod:`data_pipeline.structure`.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import gemmi

from data_pipeline.rcsb_ids import normalize_pdb_id
from data_pipeline.cif_scan import atom_site_loop, find_line_start, find_tag
from data_pipeline.sniff import SourceError, gunzip

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "EntryMismatch",
    "VerificationError",
    "verify_structure_bytes",
    "verify_structure_file",
]

_GZIP_MAGIC = b"\x1f\x8b"
#: Cap on the decompressed size; the largest wwPDB mmCIF files are a few hundred MB.
MAX_DECOMPRESSED_BYTES = 1 << 30
#: Rows of a large ``_atom_site`` loop given to gemmi at once (about 50,000 atoms).
_SLICE_BYTES = 1 << 22
_HEAD_BYTES = 1 << 16  # the entry ID is in the first lines of a wwPDB file: look no further
_CIF_BLOCK = re.compile(rb"(?im)^[ \t]*data_(\S*)")
_CIF_ENTRY_ID = re.compile(rb"(?m)^[ \t]*_entry\.id[ \t]+(\S+)")
_PDB_HEADER = re.compile(rb"(?m)^HEADER[^\r\n]*")


class VerificationError(Exception):
    """A file or downloaded body is not a complete, parseable structure."""


class EntryMismatch(VerificationError):
    """A complete structure file, but not of the requested entry (or without an entry ID
    to tell): a server that sends it will send it again, so it is not retried."""


def _count_atoms(structure: gemmi.Structure) -> int:
    return sum(model.count_atom_sites() for model in structure)


def _parse_cif(text: bytes) -> tuple[int, gemmi.cif.Document]:
    """(atom sites of the structure of the first block, the document for
    :func:`_check_complete`); gemmi's errors propagate."""
    sliced = _parse_cif_sliced(text)
    if sliced is not None:
        return sliced
    doc = gemmi.cif.read_string(text)
    if len(doc) == 0:
        raise VerificationError("mmCIF has no data block")
    return _count_atoms(gemmi.make_structure_from_block(doc[0])), doc


def _parse_cif_sliced(text: bytes) -> tuple[int, gemmi.cif.Document] | None:
    """:func:`_parse_cif` with the rows of a large ``_atom_site`` loop given to gemmi
    :data:`_SLICE_BYTES` at a time (module docstring, **Memory**), or None when the loop
    is small, has another layout (``;`` text fields, tags not one a line), is not in
    the first block, or any part fails: the caller then parses the whole text, so a
    file that fails is reported by the same gemmi message as before."""
    loop = atom_site_loop(text)
    if loop is None or loop[2] - loop[1] <= 2 * _SLICE_BYTES:
        return None
    _, start, end = loop
    if 0 <= find_line_start(text, b";", start) < end:
        return None  # a text field: rows may span lines
    cuts = [start]
    while end - cuts[-1] > _SLICE_BYTES:
        cut = text.find(b"\n", cuts[-1] + _SLICE_BYTES, end)
        if cut < 0:
            break
        cuts.append(cut + 1)
    if cuts[-1] < end:
        cuts.append(end)
    header = b"data_slice\nloop_\n" + text[find_tag(text, b"_atom_site.", prefix=True) : start]
    try:  # the rest of the text with the first slice: every category, block and check
        doc = gemmi.cif.read_string(text[: cuts[1]] + text[end:])
        if len(doc) == 0 or "_atom_site." not in doc[0].get_mmcif_category_names():
            return None
        n_atoms = _count_atoms(gemmi.make_structure_from_block(doc[0]))
        for lo, hi in itertools.pairwise(cuts[1:]):  # one atom site per row
            block = gemmi.cif.read_string(header + text[lo:hi])[0]
            n_atoms += _count_atoms(gemmi.make_structure_from_block(block))
    except (RuntimeError, ValueError):
        return None
    return n_atoms, doc


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """:func:`data_pipeline.sniff.gunzip`, strict, its errors as :class:`VerificationError`."""
    try:
        return gunzip(data, max_bytes, strict=True)
    except SourceError as exc:
        raise VerificationError(str(exc)) from None


def _check_complete(text: bytes, fmt: str, doc: gemmi.cif.Document | None) -> None:
    if fmt == "pdb":
        tail = text[-4096:].rstrip() or text.rstrip()
        last = tail.rsplit(b"\n", 1)[-1]
        if last[:6].rstrip() != b"END":
            raise VerificationError("PDB file does not end with its END record (truncated?)")
        return
    assert doc is not None
    blocks = [b.name for b in doc if "_atom_site." in b.get_mmcif_category_names()]
    if len(blocks) > 1:
        raise VerificationError(f"{len(blocks)} data blocks with coordinates ({', '.join(blocks[:5])})")
    loop = atom_site_loop(text)
    if loop is not None and loop[2] >= len(text):
        raise VerificationError(
            "the _atom_site loop runs into the end of the file: truncated at a row "
            "boundary (wwPDB files close it with '#')"
        )


def _entry_ids(head: bytes, fmt: str) -> list[str]:
    """IDs the text gives itself: block name and ``_entry.id``, or the HEADER ID code."""
    if fmt == "pdb":
        m = _PDB_HEADER.search(head)
        code = m.group(0)[62:66].decode("latin-1").strip() if m else ""
        return [code] if code else []
    ids = []
    block = _CIF_BLOCK.search(head)
    if block:
        ids.append(block.group(1).decode("latin-1"))
    entry = _CIF_ENTRY_ID.search(head)
    if entry:
        ids.append(entry.group(1).decode("latin-1").strip("'\""))
    return ids


def _check_entry_id(head: bytes, fmt: str, pdb_id: str) -> None:
    want = normalize_pdb_id(pdb_id)
    where = "data_ block name / _entry.id" if fmt == "cif" else "HEADER ID code"
    found = _entry_ids(head, fmt)
    if not found:
        raise EntryMismatch(f"no {where} in the file: cannot tell whether it is entry {want}")
    for got in found:
        try:
            same = normalize_pdb_id(got) == want
        except ValueError:
            same = False
        if not same:
            raise EntryMismatch(f"file is entry {got!r} ({where}), not the requested {want}")


def verify_structure_bytes(
    data: bytes, fmt: str, pdb_id: str | None = None, *, max_bytes: int = MAX_DECOMPRESSED_BYTES
) -> int:
    """Check that ``data`` is a complete gzipped structure file of format ``fmt``.

    Args:
        data: the compressed bytes exactly as stored or served.
        fmt: ``"cif"`` (PDBx/mmCIF) or ``"pdb"`` (legacy PDB format).
        pdb_id: when given, the file must be this entry (see the module docstring).
        max_bytes: the largest accepted decompressed size.

    Returns:
        The number of atom sites gemmi read (>= 1).

    Raises:
        VerificationError: with a short reason (empty, not gzip, truncated, bad CRC,
            too large, does not parse, no atoms, incomplete); :class:`EntryMismatch`
            (a subclass) for a whole file of another entry, or one without an ID.
    """
    if fmt not in ("cif", "pdb"):
        raise ValueError(f"format must be 'cif' or 'pdb', got {fmt!r}")
    if not data:
        raise VerificationError("empty file")
    if data[:2] != _GZIP_MAGIC:
        raise VerificationError(f"not a gzip stream (starts with {data[:16]!r})")
    text = _gunzip(data, max_bytes)
    if not text or text.isspace():
        raise VerificationError("decompresses to an empty file")
    doc = None
    try:
        if fmt == "cif":
            n_atoms, doc = _parse_cif(text)
        else:
            n_atoms = _count_atoms(gemmi.read_pdb_string(text))
    except (RuntimeError, ValueError) as exc:  # gemmi reports syntax errors as these
        raise VerificationError(f"does not parse as {fmt}: {exc}") from None
    if n_atoms < 1:
        raise VerificationError(f"parses as {fmt} but holds no atoms")
    _check_complete(text, fmt, doc)
    if pdb_id is not None:
        _check_entry_id(text[:_HEAD_BYTES], fmt, pdb_id)
    return n_atoms


def verify_structure_file(path: str | Path, fmt: str, pdb_id: str | None = None) -> int:
    """Check a ``.gz`` structure file on disk; see :func:`verify_structure_bytes`.

    Args:
        path: the file.
        fmt: ``"cif"`` or ``"pdb"``.
        pdb_id: when given, the file must be this entry.

    Returns:
        The number of atom sites.

    Raises:
        VerificationError: the file is not a valid structure (or cannot be read).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise VerificationError(f"cannot read: {exc}") from None
    return verify_structure_bytes(data, fmt, pdb_id)

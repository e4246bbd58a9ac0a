"""Read a structure file's bytes safely and recognise its format by content.

Everything here is shared by both parser backends, so that gemmi and Biopython see
exactly the same text:

* gzip is recognised by its magic bytes (not by the extension) and decompressed with a
  size cap, so a gzip bomb or a truncated stream becomes one clear reason;
* empty files, binary garbage, HTML error pages and files with absurdly long lines are
  rejected before any parser sees them;
* the format is taken from the content: mmCIF starts with a ``data_`` block (after
  comments; mmCIF text with other lines before it is refused with that reason), PDB has
  ``ATOM``/``HETATM`` records, whose coordinate columns (31-54) must hold numbers (gemmi
  would read garbage there as 0, Biopython would refuse the file); a leading UTF-8
  byte-order mark is dropped;
* mmCIF is cut to the one data block that holds ``_atom_site`` (gemmi reads the first
  block's atoms, Biopython merges all blocks, the last one winning); a file with two or
  more such blocks (``cat a.cif b.cif``) is refused. An ``_atom_site`` loop whose last
  row is incomplete (a truncated file) is refused too: gemmi rejects it, Biopython would
  keep the rows before the cut;
* PDB files written before 1996 keep an ID code and a sequence number in columns 73-80
  (e.g. ``1ACB 103``). Columns 77-78 are the element and 79-80 the charge in the current
  format, so gemmi rejects such records ("Wrong format for charge"). When any
  ``ATOM``/``HETATM`` record holds such text, columns 73-80 of every line are blanked
  and both backends infer elements from atom names;
* the entry ID, experimental method and resolution are read from the header text by the
  same code for both backends.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_pipeline.cif_scan import (
    atom_site_blocks,
    atom_site_loop,
    cif_tag_values,
    find_line_start,
    find_tag,
    cut_loop_values,
)

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"  # some editors start text files with it; gemmi refuses it
#: Default cap on the (decompressed) size of one structure file.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: No PDB (80 columns) or mmCIF (2048 by the CIF 1.1 spec) line is longer than this.
MAX_LINE_BYTES = 65536
_STRUCTURE_SUFFIXES = (".cif", ".mmcif", ".pdb", ".ent")


class SourceError(Exception):
    """The bytes cannot be a structure file; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Source:
    """Decompressed, checked text of one structure file."""

    data: bytes  # the text as bytes (latin-1 compatible), legacy columns already blanked,
    #               mmCIF cut to its data block with coordinates
    fmt: str  # "pdb" or "cif"
    entry_id: str  # from the content when present, else the file stem
    method: str | None
    resolution: float | None
    legacy_columns: bool  # columns 73-80 were blanked
    n_models: int | None = None  # set by data_pipeline.trim when it cuts the text


def file_stem(path: str | Path) -> str:
    """File name without ``.gz`` and a structure suffix (``1A2K_r_u.pdb.gz`` -> ``1A2K_r_u``)."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for suffix in _STRUCTURE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_bytes(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic, without a
    leading UTF-8 byte-order mark.

    Raises :class:`SourceError` for a missing file, a file (or decompressed stream) over
    ``max_bytes``, and a corrupt or truncated gzip stream.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SourceError(f"cannot read file: {exc.strerror or exc}") from None
    if not path.is_file():
        raise SourceError("not a regular file")
    if size > max_bytes:
        raise SourceError(f"file is {size} bytes, over max_bytes={max_bytes}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read file: {exc.strerror or exc}") from None
    if raw[:2] == GZIP_MAGIC:
        raw = gunzip(raw, max_bytes)
    return raw.removeprefix(UTF8_BOM)


def gunzip(raw: bytes, max_bytes: int, *, strict: bool = False) -> bytes:
    """Decompress (possibly multi-member) gzip data, checking each member's CRC and length
    and refusing output over ``max_bytes``. Bytes after the last member are ignored, like
    gzip(1) does; ``strict`` (verifying a download) allows only zero padding there."""
    out: list[bytes] = []
    total = 0
    while raw:
        dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = dec.decompress(raw, max_bytes - total + 1)
        except zlib.error as exc:  # also a bad CRC-32 or length trailer
            raise SourceError(f"corrupt gzip data ({exc})") from None
        total += len(chunk)
        if total > max_bytes:
            raise SourceError(f"decompressed size is more than {max_bytes} bytes (max_bytes)")
        out.append(chunk)
        if not dec.eof:
            raise SourceError("truncated gzip stream (ends before the end-of-stream marker)")
        raw = dec.unused_data.lstrip(b"\x00") if strict else dec.unused_data
        if raw and raw[:2] != GZIP_MAGIC:
            if strict:
                raise SourceError("corrupt gzip data: trailing bytes after the last member")
            break
    return b"".join(out)


# --------------------------------------------------------------------------- checks

_CONTROL = bytes(c for c in range(32) if c not in (9, 10, 12, 13))
_HIGH = bytes(range(128, 256))
# An ATOM/HETATM record whose coordinate columns (31-54) are not all digits, signs, dots
# or blanks (gemmi would read such a field as 0, Biopython would refuse the file).
# Line patterns start with a literal newline and run on b"\n" + data: re's literal-prefix
# scan makes them ~10x faster than (?m)^ anchors on megabyte files.
_BAD_COORDS = re.compile(rb"\n(?:ATOM  |HETATM)(?![^\n]{24}[ 0-9.+\-]{24})")
_PDB_RECORD = re.compile(rb"\n(?:ATOM  |HETATM)")
_CIF_DATA = re.compile(rb"\A(?:[ \t]*(?:#[^\n]*)?\r?\n)*[ \t]*data_", re.I)


def check_text(data: bytes) -> str:
    """Reject non-structure content and return the format, ``"pdb"`` or ``"cif"``.

    A leading UTF-8 byte-order mark is ignored (:func:`read_bytes` removes it)."""
    data = data.removeprefix(UTF8_BOM)
    if not data.strip():
        raise SourceError("empty file")
    head = data[:65536]
    if b"\x00" in head:
        raise SourceError("binary content (NUL bytes), not a text structure file")
    if len(head.translate(None, _CONTROL)) < 0.95 * len(head):
        raise SourceError("binary content (control characters), not a text structure file")
    if len(head.translate(None, _HIGH)) < 0.7 * len(head):
        raise SourceError("binary content (mostly non-ASCII bytes), not a text structure file")
    if head.lstrip()[:1] == b"<":
        raise SourceError("HTML/XML document, not a structure file (an error page?)")
    longest = _longest_line(data)
    if longest > MAX_LINE_BYTES:
        raise SourceError(f"a line of {longest} bytes (limit {MAX_LINE_BYTES}): not a PDB or mmCIF file")
    if _CIF_DATA.match(data):
        if find_tag(data, b"_atom_site.", prefix=True) < 0:
            raise SourceError("mmCIF without an _atom_site table (no coordinates)")
        return "cif"
    if find_tag(data, b"_atom_site.", prefix=True) >= 0 and find_tag(data, b"data_", prefix=True) > 0:
        # mmCIF rows start with ATOM too: without this, a malformed PDB record would be blamed
        line = data.count(b"\n", 0, find_tag(data, b"data_", prefix=True)) + 1
        raise SourceError(f"mmCIF with other text before its data_ block (line {line}); "
                          "an mmCIF file must start with data_ (after comments)")
    if _PDB_RECORD.search(b"\n" + data):
        return "pdb"
    raise SourceError("unrecognised format: neither mmCIF (data_ block) nor PDB (ATOM/HETATM records)")


def check_pdb_coordinates(data: bytes) -> None:
    """Refuse ATOM/HETATM records whose columns 31-54 are not numbers (run on model 1)."""
    lines = b"\n" + data
    bad = _BAD_COORDS.search(lines)
    if bad:
        line = lines.count(b"\n", 0, bad.start() + 1)
        raise SourceError(f"malformed ATOM/HETATM record at line {line}: columns 31-54 must be x, y, z numbers")


def _longest_line(data: bytes) -> int:
    if len(data) <= MAX_LINE_BYTES:
        return len(data)
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    bounds = np.concatenate(([-1], newlines, [len(data)]))
    return int(np.diff(bounds).max()) - 1


# ------------------------------------------------------------- legacy PDB columns

# Columns 77-80 of ATOM/HETATM records: element (77-78) and charge (79-80).
_COLS_77_80 = re.compile(rb"\n(?:ATOM  |HETATM).{70}([^\r\n]{1,4})")
_VALID_77_80 = re.compile(rb"^[ A-Za-z]{0,2}(?:  ?|[0-9][+-]|[+-][0-9])?$")
_TRUNCATE_72 = re.compile(rb"\n([^\r\n]{72})[^\r\n]+")


def has_legacy_columns(data: bytes) -> bool:
    """True when an ATOM/HETATM record has non-element/charge text in columns 77-80."""
    return any(not _VALID_77_80.match(v) for v in set(_COLS_77_80.findall(b"\n" + data)))


def blank_legacy_columns(data: bytes) -> bytes:
    """Cut every line after column 72 (pre-1996 ID code and sequence number)."""
    return _TRUNCATE_72.sub(rb"\n\1", b"\n" + data)[1:]


# ----------------------------------------------------------------------- metadata

_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_PDB_ID = re.compile(r"^[0-9][A-Za-z0-9]{3}$")


def _pdb_header(data: bytes) -> tuple[str | None, str | None, float | None]:
    head_end = _PDB_RECORD.search(b"\n" + data)
    head = data[: head_end.start() if head_end else len(data)].decode("latin-1")
    entry_id = method = resolution = None
    methods: list[str] = []
    for line in head.splitlines():
        rec = line[:6]
        if rec == "HEADER" and entry_id is None:
            entry_id = line[62:66].strip() if _PDB_ID.match(line[62:66].strip()) else None
        elif rec == "EXPDTA":
            methods.append(line[10:79].strip())
        elif rec == "REMARK" and line[6:10].strip() == "2" and "RESOLUTION." in line:
            m = re.search(r"RESOLUTION\.\s*([0-9.]+)", line)
            if m:
                resolution = _to_float(m.group(1))
        elif rec == "REMARK" and line[6:10].strip() == "3" and resolution is None:
            m = re.search(r"RESOLUTION RANGE HIGH \(ANGSTROMS\)\s*:\s*([0-9.]+)", line)
            if m:
                resolution = _to_float(m.group(1))
    if methods:
        method = " ".join(m for m in methods if m).replace(";", "; ")
        method = re.sub(r"\s+", " ", method).strip() or None
    return entry_id, method, resolution


def _to_float(value: str | None) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and out > 0 else None


def _cif_header(data: bytes) -> tuple[str | None, str | None, float | None]:
    # The _atom_site rows are most of the file and hold no tags: search around them.
    start = find_tag(data, b"_atom_site.", prefix=True)
    end = find_line_start(data, b"#", start) if start >= 0 else -1
    if start >= 0:
        data = data[:start] + (data[end:] if end >= 0 else b"")
    entry = cif_tag_values(data, "_entry.id")
    entry_id = entry[0] if entry else None
    if not entry_id or not _ID_OK.match(entry_id):
        block = re.match(rb"\s*(?:#[^\n]*\n\s*)*data_(\S*)", data[:4096], re.I)
        name = block.group(1).decode("latin-1") if block else ""
        entry_id = name if _PDB_ID.match(name) else None
    methods = [v for v in cif_tag_values(data, "_exptl.method") if v not in ("?", ".")]
    method = "; ".join(methods) or None
    resolution = None
    for tag in ("_refine.ls_d_res_high", "_em_3d_reconstruction.resolution", "_reflns.d_resolution_high"):
        values = cif_tag_values(data, tag)
        resolution = _to_float(values[0]) if values else None
        if resolution is not None:
            break
    return entry_id, method, resolution


def check_cif(data: bytes) -> bytes:
    """The checked mmCIF text both backends read: only the data block with ``_atom_site``.

    Raises :class:`SourceError` when several blocks hold ``_atom_site`` (gemmi would read
    the first, Biopython's MMCIF2Dict lets the last overwrite it), and when the
    ``_atom_site`` loop ends inside a row (gemmi refuses that, Biopython would keep the
    rows before the cut).
    """
    loop = atom_site_loop(data)
    blocks = atom_site_blocks(data, loop)
    if len(blocks) > 1:
        names = [name or "''" for _, _, name in blocks]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise SourceError(f"{len(blocks)} data blocks with coordinates ({shown}); split the file")
    start, end, _ = blocks[0]
    if (start, end) != (0, len(data)):
        data = data[start:end]
        loop = atom_site_loop(data)
    total = cut_loop_values(data, loop) if loop is not None else None
    if total is not None:
        raise SourceError(
            f"truncated mmCIF: the _atom_site loop ends inside a row ({total} values "
            f"for rows of {loop[0]} columns)"
        )
    return data


def load_source(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Source:
    """Read, check, sniff and (for legacy PDB) repair one file. Raises :class:`SourceError`."""
    data = read_bytes(path, max_bytes)
    fmt = check_text(data)
    legacy = False
    if fmt == "pdb":
        legacy = has_legacy_columns(data)
        if legacy:
            data = blank_legacy_columns(data)
        entry_id, method, resolution = _pdb_header(data)
    else:
        data = check_cif(data)
        entry_id, method, resolution = _cif_header(data)
    if not entry_id or not _ID_OK.match(entry_id):
        entry_id = file_stem(path)
    if method:
        method = method.upper()
    return Source(data, fmt, entry_id, method, resolution, legacy)

"""Read a structure file's bytes safely and recognise its format by content.

Everything here is shared by both parser backends, so that gemmi and Biopython see
exactly the same text:

* gzip is recognised by its magic bytes (not by the extension) and decompressed with a
  size cap, so a gzip bomb or a truncated stream becomes one clear reason;
* empty files, binary garbage, HTML error pages and files with absurdly long lines are
  rejected before any parser sees them;
* the format is taken from the content: mmCIF starts with a ``data_`` block (after
  comments), PDB has ``ATOM``/``HETATM`` records, whose coordinate columns (31-54) must
  hold numbers (gemmi would read garbage there as 0, Biopython would refuse the file);
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

import bisect
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
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
    """The file's content, gunzipped when it starts with the gzip magic.

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
        return gunzip(raw, max_bytes)
    return raw


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
    """Reject non-structure content and return the format, ``"pdb"`` or ``"cif"``."""
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


_TOKEN = re.compile(r"""'(?:[^']|'(?=\S))*'(?=\s|$)|"(?:[^"]|"(?=\S))*"(?=\s|$)|\S+""")


def _cif_values(text: str, tag: str) -> list[str]:
    """All values of ``tag`` (item or loop column) in ``text``; minimal, header use only."""
    m = re.search(rf"(?m)^[ \t]*{re.escape(tag)}(?=\s)", text)
    if m is None:
        return []
    line_end = text.find("\n", m.end())
    line_end = len(text) if line_end < 0 else line_end
    rest = text[m.end() : line_end].strip()
    before = text.rfind("loop_", 0, m.start())
    category = tag.split(".")[0] + "."
    in_loop = before >= 0 and all(
        not ln.strip() or ln.strip().startswith(category) or ln.strip() == "loop_"
        for ln in text[before : m.start()].splitlines()
    )
    if not in_loop:
        toks = _TOKEN.findall(rest or text[line_end : line_end + 512].lstrip().split("\n", 1)[0])
        return [_unquote(toks[0])] if toks else []
    tags = [t for t in re.findall(r"(?m)^[ \t]*(_\S+)", text[before : before + 65536])]
    tags = tags[: next((i for i, t in enumerate(tags) if not t.startswith(category)), len(tags))]
    col = tags.index(tag) if tag in tags else 0
    body_start = re.search(rf"(?m)^[ \t]*{re.escape(tags[-1])}[ \t]*$", text[before:])
    if body_start is None:
        return []
    body = text[before + body_start.end() : before + body_start.end() + 65536]
    stop = re.search(r"(?m)^[ \t]*(?:_|loop_|#|data_)", body)
    toks = _TOKEN.findall(body[: stop.start()] if stop else body)
    return [_unquote(t) for t in toks[col :: len(tags)]]


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


def _to_float(value: str | None) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and out > 0 else None


def find_tag(data: bytes, tag: bytes, start: int = 0, prefix: bool = False) -> int:
    """Offset of the first use of CIF ``tag`` as a tag (at a line start, after blanks).

    ``bytes.find`` does the scanning (a regex anchored at every line is ~20x slower);
    ``prefix=True`` accepts any tag that starts with ``tag`` (e.g. ``b"_atom_site."``).
    """
    pos = data.find(tag, start)
    while pos >= 0:
        line = data.rfind(b"\n", 0, pos) + 1
        after = data[pos + len(tag) : pos + len(tag) + 1]
        if not data[line:pos].strip(b" \t") and (prefix or after in (b"", b" ", b"\t", b"\r", b"\n")):
            return pos
        pos = data.find(tag, pos + 1)
    return -1


def find_line_start(data: bytes, char: bytes, start: int = 0) -> int:
    """Offset of the first line at or after ``start`` that begins with ``char`` (-1: none).

    ``bytes.find`` of one rare byte runs at memchr speed; searching for ``b"\\n#"``
    instead is ~10x slower on mmCIF, where every line starts with a newline.
    """
    pos = data.find(char, start)
    while pos > 0 and data[pos - 1 : pos] != b"\n":
        pos = data.find(char, pos + 1)
    return pos


def _cif_tag_values(data: bytes, tag: str) -> list[str]:
    """Values of ``tag`` anywhere in the file (a window of text around its first use)."""
    pos = find_tag(data, tag.encode())
    if pos < 0:
        return []
    lo = max(0, pos - 65536)
    return _cif_values(data[lo : pos + len(tag) + 65536].decode("latin-1"), tag)


def _cif_header(data: bytes) -> tuple[str | None, str | None, float | None]:
    # The _atom_site rows are most of the file and hold no tags: search around them.
    start = find_tag(data, b"_atom_site.", prefix=True)
    end = find_line_start(data, b"#", start) if start >= 0 else -1
    if start >= 0:
        data = data[:start] + (data[end:] if end >= 0 else b"")
    entry = _cif_tag_values(data, "_entry.id")
    entry_id = entry[0] if entry else None
    if not entry_id or not _ID_OK.match(entry_id):
        block = re.match(rb"\s*(?:#[^\n]*\n\s*)*data_(\S*)", data[:4096], re.I)
        name = block.group(1).decode("latin-1") if block else ""
        entry_id = name if _PDB_ID.match(name) else None
    methods = [v for v in _cif_tag_values(data, "_exptl.method") if v not in ("?", ".")]
    method = "; ".join(methods) or None
    resolution = None
    for tag in ("_refine.ls_d_res_high", "_em_3d_reconstruction.resolution", "_reflns.d_resolution_high"):
        values = _cif_tag_values(data, tag)
        resolution = _to_float(values[0]) if values else None
        if resolution is not None:
            break
    return entry_id, method, resolution


# ---------------------------------------------------------------- mmCIF structure

# A line that closes a loop: a comment, a tag, loop_, a new block or a save frame.
_LOOP_END = re.compile(rb"\n[ \t]*(?:#|_|[lL][oO][oO][pP]_|[dD][aA][tT][aA]_|[sS][aA][vV][eE]_)")
_ATOM_SITE = b"_atom_site."

Loop = tuple[int, int, int]  # (columns, start of the rows, end of the rows)


def atom_site_loop(data: bytes) -> Loop | None:
    """``(columns, start, end)`` of the rows of the first ``_atom_site`` loop, or None.

    ``end`` is the offset of the line that closes the loop (``#``, a tag, ``loop_``,
    ``data_``, ``save_``), or ``len(data)`` when the rows run to the end of the text.
    None when ``_atom_site`` is not a loop with one tag a line.
    """
    tag = find_tag(data, _ATOM_SITE, prefix=True)
    if tag < 0:
        return None
    head = data[max(0, tag - 64) : tag].rstrip()
    if not head.lower().endswith(b"loop_") or head[-6:-5].strip():
        return None
    ntags, pos = 0, tag
    while data.startswith(_ATOM_SITE, pos):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        if len(data[pos:end].split()) != 1:
            return None  # a value on a tag line: not the layout checked here
        ntags, pos = ntags + 1, end + 1
        while data[pos : pos + 1] in (b" ", b"\t", b"\r", b"\n"):
            pos += 1
    start = min(len(data), data.rfind(b"\n", 0, pos) + 1)
    m = _LOOP_END.search(data, start - 1)
    return ntags, start, m.start() + 1 if m else len(data)


def _block_starts(data: bytes, lo: int, hi: int) -> set[int]:
    """Offsets of the ``data_`` block headers in ``data[lo:hi]`` (bytes.find: memchr speed)."""
    out = set()
    for word in (b"data_", b"DATA_"):
        pos = data.find(word, lo, hi)
        while pos >= 0:
            if not data[data.rfind(b"\n", 0, pos) + 1 : pos].strip(b" \t"):
                out.add(pos)
            pos = data.find(word, pos + 1, hi)
    return out


def _coordinate_block(data: bytes, loop: Loop | None) -> tuple[int, int]:
    """``(start, end)`` of the one data block holding ``_atom_site``; see :func:`check_cif`."""
    tag = find_tag(data, _ATOM_SITE, prefix=True)
    if tag < 0:
        return 0, len(data)
    after = loop[2] if loop else tag + 1
    # No block starts among the loop's rows (a data_ line would close the loop).
    starts = sorted(_block_starts(data, 0, tag) | _block_starts(data, after, len(data)))
    if len(starts) <= 1:
        return 0, len(data)
    found: list[int] = []  # blocks with an _atom_site tag; one find per block at most
    pos = tag
    while pos >= 0:
        i = max(0, bisect.bisect_right(starts, pos) - 1)
        found.append(i)
        pos = find_tag(data, _ATOM_SITE, starts[i + 1], prefix=True) if i + 1 < len(starts) else -1
    if len(found) > 1:
        names = [data[starts[i] : starts[i] + 90].split()[0][5:].decode("latin-1") or "''" for i in found]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise SourceError(f"{len(found)} data blocks with coordinates ({shown}); split the file")
    i = found[0]
    return starts[i], starts[i + 1] if i + 1 < len(starts) else len(data)


def _row_values(line: bytes) -> int:
    """Number of CIF values on one line (a ``#`` value starts a comment)."""
    n = 0
    for token in _TOKEN.findall(line.decode("latin-1")):
        if token.startswith("#"):
            break
        n += 1
    return n


def _check_rows(data: bytes, loop: Loop) -> None:
    """Refuse an ``_atom_site`` loop whose values do not fill whole rows (a cut file).

    With one row a line (as every common writer has them) only the first and last rows
    are read, and the whole loop is counted only when the last one looks short. Other layouts
    (rows over several lines, ``;`` text fields) are left to the parsers, which both
    count values too.
    """
    ntags, start, end = loop
    stop = end
    while stop > start and data[stop - 1] in b" \t\r\n":
        stop -= 1
    if stop <= start or 0 <= find_line_start(data, b";", start) < end:
        return
    first_end = data.find(b"\n", start, stop)
    if _row_values(data[start : stop if first_end < 0 else first_end]) != ntags:
        return  # rows span lines
    if _row_values(data[max(start, data.rfind(b"\n", start, stop) + 1) : stop]) == ntags:
        return
    total = sum(_row_values(line) for line in data[start:stop].splitlines())
    if total % ntags:
        raise SourceError(
            f"truncated mmCIF: the _atom_site loop ends inside a row ({total} values "
            f"for rows of {ntags} columns)"
        )


def check_cif(data: bytes) -> bytes:
    """The checked mmCIF text both backends read: only the data block with ``_atom_site``.

    Raises :class:`SourceError` when several blocks hold ``_atom_site`` (gemmi would read
    the first, Biopython's MMCIF2Dict lets the last overwrite it), and when the
    ``_atom_site`` loop ends inside a row (gemmi refuses that, Biopython would keep the
    rows before the cut).
    """
    loop = atom_site_loop(data)
    start, end = _coordinate_block(data, loop)
    if (start, end) != (0, len(data)):
        data = data[start:end]
        loop = atom_site_loop(data)
    if loop is not None:
        _check_rows(data, loop)
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

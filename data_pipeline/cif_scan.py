"""Fast scanning of mmCIF text (bytes) for the few things :mod:`data_pipeline.sniff`,
:mod:`data_pipeline.trim` and :mod:`data_pipeline.fetch_verify` need before a parser
runs: where a tag is, the values of a header tag, where the ``_atom_site`` loop's rows
are, which data blocks hold coordinates and whether the loop ends inside a row.

``bytes.find`` does the scanning (memchr speed); the ``_atom_site`` rows, most of a
file, are never tokenised except to count the values of a loop that looks cut.
Policy (what to refuse, and why) stays in :func:`data_pipeline.sniff.check_cif`.
"""

from __future__ import annotations

import bisect
import re

_TOKEN = re.compile(r"""'(?:[^']|'(?=\S))*'(?=\s|$)|"(?:[^"]|"(?=\S))*"(?=\s|$)|\S+""")


def cif_values(text: str, tag: str) -> list[str]:
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


def cif_tag_values(data: bytes, tag: str) -> list[str]:
    """Values of ``tag`` anywhere in the file (a window of text around its first use)."""
    pos = find_tag(data, tag.encode())
    if pos < 0:
        return []
    lo = max(0, pos - 65536)
    return cif_values(data[lo : pos + len(tag) + 65536].decode("latin-1"), tag)


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


def atom_site_blocks(data: bytes, loop: Loop | None) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of every data block that holds an ``_atom_site`` tag, in
    file order; ``[(0, len(data), "")]`` when the text has at most one block (or no
    ``_atom_site``), the common case, found without scanning the rows."""
    tag = find_tag(data, _ATOM_SITE, prefix=True)
    if tag < 0:
        return [(0, len(data), "")]
    after = loop[2] if loop else tag + 1
    # No block starts among the loop's rows (a data_ line would close the loop).
    starts = sorted(_block_starts(data, 0, tag) | _block_starts(data, after, len(data)))
    if len(starts) <= 1:
        return [(0, len(data), "")]
    blocks = []  # one find per block at most
    pos = tag
    while pos >= 0:
        i = max(0, bisect.bisect_right(starts, pos) - 1)
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        name = data[starts[i] : starts[i] + 90].split()[0][5:].decode("latin-1")
        blocks.append((starts[i], end, name))
        pos = find_tag(data, _ATOM_SITE, end, prefix=True) if end < len(data) else -1
    return blocks


def _row_values(line: bytes) -> int:
    """Number of CIF values on one line (a ``#`` value starts a comment)."""
    n = 0
    for token in _TOKEN.findall(line.decode("latin-1")):
        if token.startswith("#"):
            break
        n += 1
    return n


def cut_loop_values(data: bytes, loop: Loop) -> int | None:
    """The number of values in the ``_atom_site`` loop when they do not fill whole rows
    (a cut file), else None.

    With one row a line (as every common writer has them) only the first and last rows
    are read, and the whole loop is counted only when the last one looks short. Other
    layouts (rows over several lines, ``;`` text fields) give None: they are left to the
    parsers, which both count values too.
    """
    ntags, start, end = loop
    stop = end
    while stop > start and data[stop - 1] in b" \t\r\n":
        stop -= 1
    if stop <= start or 0 <= find_line_start(data, b";", start) < end:
        return None
    first_end = data.find(b"\n", start, stop)
    if _row_values(data[start : stop if first_end < 0 else first_end]) != ntags:
        return None  # rows span lines
    if _row_values(data[max(start, data.rfind(b"\n", start, stop) + 1) : stop]) == ntags:
        return None
    total = sum(_row_values(line) for line in data[start:stop].splitlines())
    return total if total % ntags else None

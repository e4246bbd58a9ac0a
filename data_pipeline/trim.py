"""Trim structure text to what the policy uses, before parsing (both backends).

* **Model 1 only.** NMR ensembles hold 10-40 models; parsing only the first makes them
  10-40x cheaper. PDB: everything from the first ``ENDMDL`` record on is dropped. mmCIF:
  when ``pdbx_PDB_model_num`` is the last ``_atom_site`` column and every row is one
  line, rows after model 1 are dropped (found by binary search over line starts; spot
  checks refuse the cut if rows are not sorted by model).
* **No anisotropic displacement tensors.** The mmCIF ``_atom_site_anisotrop`` loop (up
  to a fifth of a high-resolution file) is removed when it is delimited by ``#`` lines.

:func:`trim` does both and serves both backends. Two more cuts serve only the gemmi
backend, whose ``Structure`` is built from ``_atom_site`` alone: :func:`cif_atom_site_only`
(the loop without the other categories) and :func:`cif_filter_rows` (only the rows a
selection can use, for fixed-width rows).

Every function is conservative: when the text does not have the simple layout it relies
on, it returns the text unchanged, and the parser reads everything.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from data_pipeline.cif_scan import find_line_start, find_tag
from data_pipeline.sniff import Source
from data_pipeline.structure import UNKNOWN, residue_kind

# Patterns start with a newline (fast literal-prefix scan); PDB ones run on b"\n" + data.
_MODEL = re.compile(rb"\nMODEL\b")
_ENDMDL = re.compile(rb"\nENDMDL")
_LOOP_END = re.compile(rb"\n[ \t]*(?:#|loop_|_|data_)")
_MODEL_TAG = b"_atom_site.pdbx_PDB_model_num"
_ATOM_SITE_ONLY = b"data_atom_site\n"
_WATER_COMPS = (b"HOH", b"WAT", b"DOD")


def pdb_first_model(data: bytes) -> tuple[bytes, int]:
    """(text up to the first ENDMDL, number of MODEL records or 1)."""
    lines = b"\n" + data
    n_models = max(1, len(_MODEL.findall(lines)))
    end = _ENDMDL.search(lines)
    return (data if end is None else data[: end.start()]), n_models


def cif_first_model(data: bytes) -> tuple[bytes, int | None]:
    """(text with only model 1 in ``_atom_site``, number of models or None if unknown)."""
    first = find_tag(data, b"_atom_site.", prefix=True)
    if first < 0:
        return data, None
    # Tag lines of the loop; they must be a loop (no values on the tag lines).
    pos, ntags, last_tag = first, 0, b""
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            return data, None
        fields = data[pos:end].split()
        if not fields or not fields[0].startswith(b"_atom_site."):
            break
        if len(fields) > 1 or data.rfind(b"loop_", 0, first) < 0:
            return data, None
        ntags, last_tag = ntags + 1, fields[0]
        pos = end + 1
        while data[pos : pos + 1] in (b" ", b"\t"):
            pos += 1
    if last_tag != _MODEL_TAG:
        return data, None
    rows_start = data.rfind(b"\n", 0, pos) + 1
    hash_line = find_line_start(data, b"#", rows_start)  # wwPDB writers close loops with '#'
    rows_end = hash_line if hash_line >= 0 else len(data)

    def model_at(a: int, b: int) -> bytes | None:
        fields = data[a:b].split()
        return fields[-1] if len(fields) == ntags else None

    # Fast path: the last row belongs to the first row's model: nothing to cut (the parser
    # counts the models, in case rows are not sorted).
    first_end = data.find(b"\n", rows_start)
    last_start = data.rfind(b"\n", rows_start, rows_end - 1) + 1
    first_model = model_at(rows_start, first_end)
    if first_model is not None and first_model == model_at(last_start, rows_end - 1):
        return data, None

    region = data[rows_start:rows_end]
    arr = np.frombuffer(region, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    if len(newlines) == 0:
        return data, None
    starts = np.concatenate(([0], newlines[:-1] + 1))
    # The loop ends at the first line that opens a tag, loop, comment or block.
    heads = arr[np.minimum(starts, len(arr) - 1)]
    for j in np.flatnonzero(np.isin(heads, np.frombuffer(b"#_ld \t", dtype=np.uint8))).tolist():
        if _LOOP_END.match(b"\n" + region[starts[j] : starts[j] + 8]):
            if j == 0:
                return data, None
            rows_end = rows_start + int(starts[j])
            starts, newlines = starts[:j], newlines[:j]
            break

    def model(j: int) -> bytes | None:
        return model_at(rows_start + int(starts[j]), rows_start + int(newlines[j]))

    n_rows = len(starts)
    bounds = [0]  # first row of each model, by binary search (rows sorted by model)
    while bounds[-1] < n_rows and len(bounds) <= 10000:
        current = model(bounds[-1])
        if current is None:
            return data, None
        lo, hi = bounds[-1] + 1, n_rows
        while lo < hi:
            mid = (lo + hi) // 2
            value = model(mid)
            if value is None:
                return data, None
            lo, hi = (mid + 1, hi) if value == current else (lo, mid)
        bounds.append(lo)
    n_models = len(bounds) - 1
    # Spot checks that rows really are sorted by model (every writer we know does this).
    for j in np.linspace(0, n_rows - 1, num=min(n_rows, 64)).astype(int).tolist():
        seg = int(np.searchsorted(bounds, j, side="right")) - 1
        if model(j) != model(bounds[seg]):
            return data, None
    if n_models <= 1:
        return data, 1
    cut = rows_start + int(starts[bounds[1]])
    return data[:cut] + data[rows_end:], n_models


def cif_drop_anisotrop(data: bytes) -> bytes:
    """``data`` without its ``_atom_site_anisotrop`` loop (unchanged unless '#'-delimited)."""
    tag = find_tag(data, b"_atom_site_anisotrop.", prefix=True)
    if tag < 0:
        return data
    loop = data.rfind(b"loop_", 0, tag)
    if loop < 1 or data[loop - 1 : loop] != b"\n" or data[loop + 5 : tag].strip():
        return data  # not a loop whose first tag this is
    end = find_line_start(data, b"#", tag)
    if end < 0:
        return data
    # Past the tag lines, nothing in the loop may start a tag, loop or block.
    rows = tag
    while data[rows : rows + 21] == b"_atom_site_anisotrop.":
        rows = data.find(b"\n", rows) + 1
        while data[rows : rows + 1] in (b" ", b"\t"):
            rows += 1
        if rows <= 0:
            return data
    body = data[rows:end]
    if find_line_start(body, b"_") >= 0 or find_line_start(body, b"l") >= 0 or find_line_start(body, b"d") >= 0:
        return data
    return data[:loop] + data[end:]


def cif_atom_site_only(data: bytes) -> bytes:
    """A one-block mmCIF holding only the ``_atom_site`` loop of ``data`` (else ``data``).

    The gemmi backend parses this: everything it reads for the policy is in that loop, and
    the other categories cost ~15% of the tokenizer's time. Requires a '#'-delimited loop.
    """
    tag = find_tag(data, b"_atom_site.", prefix=True)
    if tag < 0:
        return data
    loop = data.rfind(b"loop_", 0, tag)
    if loop < 1 or data[loop - 1 : loop] != b"\n" or data[loop + 5 : tag].strip():
        return data
    end = find_line_start(data, b"#", tag)
    end = len(data) if end < 0 else end
    body = data[tag:end]
    after_tags = body.rfind(b"\n_atom_site.")  # the last tag line; rows follow it
    rows = body[body.find(b"\n", after_tags + 1) + 1 :] if after_tags >= 0 else body
    for mark in (b"_", b"loop_", b"data_", b"save_"):
        if find_line_start(rows, mark) >= 0:
            return data
    return _ATOM_SITE_ONLY + data[loop:end]


def cif_filter_rows(text: bytes, names: frozenset[str] | None, keep_waters: bool) -> bytes:
    """Drop ``_atom_site`` rows that the selection cannot use, at numpy speed.

    ``text`` is the output of :func:`cif_atom_site_only`. Only for fixed-width rows (every
    row the same length, each needed column starting at the same offset in every row, as
    wwPDB, gemmi and biotite write them): keeps rows whose atom name (``auth_atom_id``,
    the column gemmi reads) is in ``names`` (None: all) plus every row of a residue name
    missing from gemmi's table (the policy needs its N and C too), and drops water rows
    unless ``keep_waters``. Returns ``text`` unchanged when anything does not fit.
    """
    if (names is None and keep_waters) or not text.startswith(_ATOM_SITE_ONLY + b"loop_"):
        return text
    pos = text.index(b"\n", len(_ATOM_SITE_ONLY)) + 1
    tags: list[bytes] = []
    while text.startswith(b"_atom_site.", pos):
        end = text.find(b"\n", pos)
        if end < 0:
            return text
        tags.append(text[pos:end].strip())
        pos = end + 1
    body = np.frombuffer(text, dtype=np.uint8, offset=pos)
    width = text.find(b"\n", pos) - pos + 1
    if width < 2 or len(body) % width or not (body[width - 1 :: width] == 10).all():
        return text
    rows = body.reshape(-1, width)
    starts = [m.start() for m in re.finditer(rb"\S+", text[pos : pos + width])]
    if len(starts) != len(tags):
        return text  # quoted values with blanks: not worth it

    def column(*candidates: bytes) -> int | None:
        for tag in candidates:
            if tag in tags:
                if tag == tags[-1]:
                    return None  # the last value is not followed by a blank on every row
                off = starts[tags.index(tag)]
                if (rows[:, off] != 32).all() and (off == 0 or (rows[:, off - 1] == 32).all()):
                    return off
                return None
        return None

    def equals(off: int, token: bytes) -> np.ndarray:  # token followed by a blank
        pat = np.frombuffer(token + b" ", dtype=np.uint8)
        if off + len(pat) > width - 1:
            return np.zeros(len(rows), dtype=bool)
        return (rows[:, off : off + len(pat)] == pat).all(axis=1)

    comp_tag = b"_atom_site.auth_comp_id" if b"_atom_site.auth_comp_id" in tags else b"_atom_site.label_comp_id"
    comp = column(comp_tag)
    if comp is None:
        return text
    keep = np.ones(len(rows), dtype=bool)
    if names is not None:
        atom = column(b"_atom_site.auth_atom_id", b"_atom_site.label_atom_id")
        j = tags.index(comp_tag)
        if atom is None or j + 1 >= len(tags) or column(tags[j + 1]) is None or starts[j + 1] - 1 <= comp:
            return text
        # Residues missing from gemmi's table keep every atom (the policy needs N and C).
        comps = rows[:, comp : starts[j + 1] - 1].copy().view(f"S{starts[j + 1] - 1 - comp}").ravel()
        unique, inverse = np.unique(comps, return_inverse=True)
        unknown = np.array([residue_kind(u.strip().decode("latin-1")) == UNKNOWN for u in unique])
        keep = unknown[inverse.ravel()]
        for name in names:
            keep |= equals(atom, name.encode())
    if not keep_waters:
        for water in _WATER_COMPS:
            keep &= ~equals(comp, water)
    if keep.all():
        return text
    return text[:pos] + rows[keep].tobytes()


def trim(source: Source) -> Source:
    """``source`` cut to model 1 (``n_models`` filled in when known), mmCIF without ADPs."""
    if source.fmt == "pdb":
        data, n_models = pdb_first_model(source.data)
    else:
        data, n_models = cif_first_model(cif_drop_anisotrop(source.data))
    return dataclasses.replace(source, data=data, n_models=n_models)

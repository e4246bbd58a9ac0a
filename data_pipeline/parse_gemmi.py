"""gemmi backend: list the atoms of model 1 for :func:`data_pipeline.structure.apply_policy`.

gemmi parses the trimmed text (:mod:`data_pipeline.trim`) in C++ (``read_pdb_string`` /
``read_structure_string``); Python then walks model 1 residue by residue and reads only
the atoms the selection can use: for ``ca`` one C++ lookup and one row per residue.
"""

from __future__ import annotations

from collections.abc import Iterable

import gemmi

from data_pipeline.sniff import Source
from data_pipeline.structure import AA, UNKNOWN, WATER, AtomTable, residue_kind
from data_pipeline.trim import cif_atom_site_only, cif_filter_rows

VERSION = gemmi.__version__


def parse(
    source: Source, names: frozenset[str] | None = None, keep_waters: bool = True
) -> gemmi.Structure:
    """gemmi structure of the checked source text (raises on malformed records).

    mmCIF is parsed from its ``_atom_site`` loop alone (the other categories are ~15% of
    the tokenizer's time and unused) and, for fixed-width rows, without the rows that the
    atom ``names`` filter or ``keep_waters=False`` would drop anyway (for ``ca``: ~85% of
    the rows; see :func:`data_pipeline.trim.cif_filter_rows`).
    """
    if source.fmt == "pdb":
        return gemmi.read_pdb_string(source.data)
    text = cif_filter_rows(cif_atom_site_only(source.data), names, keep_waters)
    return gemmi.read_structure_string(text, format=gemmi.CoorFormat.Mmcif)


def read_table(
    source: Source, names: frozenset[str] | None, protein_only: bool, keep_waters: bool
) -> AtomTable:
    """Parse and list model 1 (see :func:`atom_table`)."""
    return atom_table(parse(source, names, keep_waters), names, protein_only, keep_waters)


def atom_table(
    st: gemmi.Structure,
    names: frozenset[str] | None,
    protein_only: bool,
    keep_waters: bool,
) -> AtomTable:
    """Rows for the atoms of model 1 (all altlocs); see :class:`AtomTable`.

    ``names``: keep only these atom names (None: all; residues of kind UNKNOWN always list
    all atoms); ``protein_only``: skip residues that cannot be protein (kind other than
    AA or UNKNOWN); ``keep_waters``: list water residues too.
    """
    t = AtomTable(n_models=len(st))
    if len(st) == 0:
        return t
    model = st[0]
    if not keep_waters:
        model.remove_waters()  # in C++: thousands of HOH are not walked in Python
    append = t.rows.append
    single = next(iter(names)) if names is not None and len(names) == 1 else None
    for chain in model:
        cname = chain.name.strip()  # same normalisation as the Biopython backend
        for res in chain:
            rname = res.name
            kind = residue_kind(rname)
            if (kind == WATER and not keep_waters) or (protein_only and kind not in (AA, UNKNOWN)):
                continue
            want = None if kind == UNKNOWN else names  # unknown names: the policy needs N, C
            atoms: Iterable[gemmi.Atom] = res
            if single is not None and want is not None:  # e.g. CA: one C++ lookup per residue
                found = res.find_atom(single, "*")
                if found is None:
                    continue
                if found.altloc == "\x00":  # no conformers (a blank copy wins anyway)
                    atoms = (found,)
            seqid = res.seqid
            head = (cname, seqid.num, seqid.icode.strip(), rname, res.het_flag == "H")
            for atom in atoms:
                aname = atom.name.strip()
                if want is not None and aname not in want:
                    continue
                pos = atom.pos
                alt = atom.altloc
                append(head + (aname, "" if alt == "\x00" else alt.strip(), atom.occ,
                               atom.element.name.upper(), pos.x, pos.y, pos.z))  # fmt: skip
    return t

"""Biopython backend: list the atoms of model 1 for :func:`data_pipeline.structure.apply_policy`.

Biopython resolves alternate locations itself (``DisorderedAtom``/``DisorderedResidue``);
here every conformer is unpacked again so that the shared policy, not Biopython's
defaults, picks one. Parsers run permissive and quiet: Biopython drops a duplicate atom
with a warning, as the policy does.
"""

from __future__ import annotations

import io
import warnings

import Bio
from Bio.PDB import MMCIFParser, PDBParser
from Bio.PDB.Structure import Structure

from data_pipeline.sniff import Source
from data_pipeline.structure import AA, UNKNOWN, WATER, AtomTable, residue_kind

VERSION = Bio.__version__


def parse(source: Source) -> Structure:
    """Biopython structure of the checked source text (raises on malformed records)."""
    handle = io.StringIO(source.data.decode("latin-1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source.fmt == "pdb":
            return PDBParser(QUIET=True).get_structure(source.entry_id, handle)
        parser = MMCIFParser(QUIET=True)
        try:
            st = parser.get_structure(source.entry_id, handle)
        except Exception:
            _check_atom_site_columns(getattr(parser, "_mmcif_dict", None))  # the clearer reason
            raise
    _check_atom_site_columns(getattr(parser, "_mmcif_dict", None))
    return st


def _check_atom_site_columns(mmcif: dict | None) -> None:
    """Refuse ragged ``_atom_site`` columns, as gemmi does ("Wrong number of values").

    MMCIF2Dict deals loop values to the columns in turn, so a loop cut inside a row
    leaves its first columns one longer; the structure builder would keep the rows
    before the cut. (The sniff step catches this for one-row-a-line loops.)
    """
    if not mmcif:
        return
    lengths = {len(v) for k, v in mmcif.items() if k.startswith("_atom_site.") and isinstance(v, list)}
    if len(lengths) > 1:
        raise ValueError(
            f"the _atom_site loop ends inside a row (columns of {min(lengths)} and "
            f"{max(lengths)} values): truncated file?"
        )


def read_table(
    source: Source, names: frozenset[str] | None, protein_only: bool, keep_waters: bool
) -> AtomTable:
    """Parse and list model 1 (see :func:`atom_table`)."""
    return atom_table(parse(source), names, protein_only, keep_waters)


def atom_table(
    st: Structure,
    names: frozenset[str] | None,
    protein_only: bool,
    keep_waters: bool,
) -> AtomTable:
    """Rows for the atoms of model 1 (all altlocs); arguments as in the gemmi backend."""
    models = st.child_list
    t = AtomTable(n_models=len(models))
    if not models:
        return t
    append = t.rows.append
    for chain in models[0]:
        cname = chain.id.strip()  # blank chain: "" as gemmi has it
        for residue in chain.child_list:
            variants = residue.disordered_get_list() if residue.is_disordered() == 2 else [residue]
            for res in variants:
                rname = res.get_resname().strip()
                kind = residue_kind(rname)
                if (kind == WATER and not keep_waters) or (protein_only and kind not in (AA, UNKNOWN)):
                    continue
                want = None if kind == UNKNOWN else names  # unknown names: the policy needs N, C
                hetfield, num, icode = res.id
                head = (cname, int(num), icode.strip(), rname, hetfield != " ")
                for atom in res.get_unpacked_list():
                    aname = atom.get_name().strip()  # " N A" (inner blank): "N A", as gemmi
                    if want is not None and aname not in want:
                        continue
                    occ = atom.get_occupancy()
                    x, y, z = atom.coord.tolist()
                    append(head + (aname, atom.get_altloc().strip(), 1.0 if occ is None else float(occ),
                                   (atom.element or "").strip().upper(), x, y, z))  # fmt: skip
    return t

"""Biopython backend: list the atoms of model 1 for :func:`data_pipeline.structure.apply_policy`.

Biopython resolves alternate locations itself (``DisorderedAtom``/``DisorderedResidue``);
here every conformer is unpacked again so that the shared policy, not Biopython's
defaults, picks one. Parsers run permissive and quiet: Biopython drops a duplicate atom
with a warning, as the policy does. Both parsers use :class:`_MicroheterogeneityBuilder`,
so that every residue name of a microheterogeneity site reaches the policy.
"""

from __future__ import annotations

import io
import warnings

import Bio
from Bio.PDB import MMCIFParser, PDBParser
from Bio.PDB.MMCIF2Dict import MMCIF2Dict
from Bio.PDB.Residue import DisorderedResidue
from Bio.PDB.Structure import Structure
from Bio.PDB.StructureBuilder import StructureBuilder

from data_pipeline.sniff import Source
from data_pipeline.structure import AA, UNKNOWN, WATER, AtomTable, residue_kind

#: The library's version and the revision of how this module reads it ("+1": the
#: microheterogeneity builder), so that stores built by an earlier reading are rebuilt.
VERSION = f"{Bio.__version__}+2"  # +2: residue and atom names from auth_comp_id / auth_atom_id


class _MicroheterogeneityBuilder(StructureBuilder):
    """Keeps every residue name at one residue id, even beside blank-altloc atoms.

    At a microheterogeneity site (1EJG A22: PRO/SER) the residue names usually share
    blank-altloc backbone atoms, listed once under the first name. Biopython builds a
    ``DisorderedResidue`` for a second name only when the first residue has no
    blank-altloc atom (``_is_completely_disordered``); otherwise it raises, which drops
    the second name's atoms in PDB format (permissive parser) and fails the whole mmCIF
    file. That check is a module-level function, not a method, so a subclass cannot
    override it (patching the module would change every parser in the process).
    Instead, at a second name this wraps the first residue, in place, in a one-member
    ``DisorderedResidue``, and Biopython's own code adds the new name to it. Blank-altloc
    atoms stay, once, with the residue name they were listed under, as in gemmi, and
    the site keeps its place in the chain (Biopython's own path moves it last: a change
    of order when the second name is listed after later residues).
    """

    def init_residue(self, resname: str, field: str, resseq: int, icode: str) -> None:
        chain, res_id = self.chain, (field, resseq, icode)
        if field == " " and chain.has_id(res_id):  # a HETATM id holds its name: no clash
            first = chain[res_id]
            if first.is_disordered() != 2 and first.get_resname() != resname:
                pos = chain.child_list.index(first)
                chain.detach_child(res_id)
                wrapper = DisorderedResidue(res_id)
                chain.insert(pos, wrapper)  # first: disordered_add takes the chain from it
                wrapper.disordered_add(first)
        super().init_residue(resname, field, resseq, icode)
        if self.residue is not None and self.residue.is_disordered() == 2:
            # Atoms go straight into the selected name's Residue: DisorderedResidue.add
            # would raise on a blank-altloc atom (fatal in mmCIF), after adding it anyway.
            self.residue = self.residue.disordered_get()


class _AuthNamesParser(MMCIFParser):
    """Takes residue and atom names from ``_atom_site.auth_comp_id`` and ``auth_atom_id``
    where a file has them (row by row, unless ``?`` or ``.``), as gemmi does; Biopython
    reads the ``label_`` columns. They differ only in rare files, where the two backends
    would otherwise name, and select, different atoms."""

    def get_structure(self, structure_id, filename):  # MMCIFParser.get_structure, with the swap
        self._mmcif_dict = mmcif = MMCIF2Dict(filename)
        for label, auth in (("label_comp_id", "auth_comp_id"), ("label_atom_id", "auth_atom_id")):
            names, preferred = mmcif.get(f"_atom_site.{label}"), mmcif.get(f"_atom_site.{auth}")
            if names is None and isinstance(preferred, list):  # only the author's names: those
                mmcif[f"_atom_site.{label}"] = preferred
            elif isinstance(names, list) and isinstance(preferred, list) and len(names) == len(preferred):
                mmcif[f"_atom_site.{label}"] = [a if a not in ("?", ".") else n for n, a in zip(names, preferred)]
        self._build_structure(structure_id)
        self._structure_builder.set_header(self._get_header())
        return self._structure_builder.get_structure()


def parse(source: Source) -> Structure:
    """Biopython structure of the checked source text (raises on malformed records)."""
    handle = io.StringIO(source.data.decode("latin-1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder = _MicroheterogeneityBuilder()
        if source.fmt == "pdb":
            return PDBParser(QUIET=True, structure_builder=builder).get_structure(source.entry_id, handle)
        parser = _AuthNamesParser(QUIET=True, structure_builder=builder)
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

"""Point clouds from structure files: the types and the one parsing policy.

Both backends (:mod:`data_pipeline.parse_gemmi`, :mod:`data_pipeline.parse_biopython`)
only *list* the atoms of model 1 as an :class:`AtomTable`; :func:`apply_policy` below
decides which of them become points. The two backends therefore agree by construction
wherever their parsers read the same atoms.

Policy
------
1. **First model only.** Other models are ignored (NMR ensembles, 2AXD's models with
   different atom counts); their text is cut before parsing (:mod:`data_pipeline.trim`),
   so a PDB file is read up to its first ``ENDMDL``.
2. **Hydrogens and waters are dropped**: elements ``H`` and ``D``; residues named as
   water (``HOH``, ``WAT``, ``DOD``, ...). Only selection ``all`` keeps them, and only
   when ``include_hydrogens`` / ``include_waters`` is set.
3. **Alternate locations.** Atoms with a blank altloc are always kept. Per atom
   (chain, residue number, insertion code, residue name, atom name) the labelled
   conformer with the highest occupancy is kept; ties go to the label that sorts first
   (``A`` before ``B``, ``1`` before ``2``; numeric labels count like letters). If an
   atom also has a blank-altloc copy, the blank one wins. Where labelled atoms of one
   residue position carry different residue names (microheterogeneity, e.g. SER/THR),
   the residue name whose labelled CA has the highest occupancy is kept first (same tie
   rule; without labelled CA atoms, all labelled atoms decide) and the other names'
   labelled atoms are dropped. Exact duplicate atoms keep their first copy.
4. **Insertion codes** keep residues distinct: a residue is (chain, number, icode, name).
5. **Protein residues** are the amino acids of polymer chains: the residue name is an
   amino acid in gemmi's table of chemical components
   (``gemmi.find_tabulated_residue(name).is_amino_acid()``: standard, modified such as
   MSE/SEP/PCA, D-amino acids, UNK), and the residue is either an ``ATOM`` record or a
   ``HETATM`` record linked into the chain: its CA lies within 4.3 A of the CA of the
   previous or next amino-acid residue of the same chain in sequence order (residue
   number, then insertion code; not file order, since cleaned files such as BM5 move
   HETATM records to the end). Peptide-bonded neighbours are 3.8 A apart, cis 2.9 A.
   A free amino acid bound as a ligand is therefore not protein. A name missing from
   gemmi's table (a rare non-canonical amino acid such as BP5 in 5EIL) counts as
   protein when the residue has N, CA and C atoms and is linked in the same way;
   tabulated non-amino-acids (nucleotides, sugars, ions) never do. The same classifier
   serves both backends.
6. **Selections**: ``ca`` (CA of protein residues), ``backbone`` (N, CA, C, O of protein
   residues), ``heavy`` (all non-hydrogen atoms of protein residues, OXT included),
   ``all`` (every atom of model 1: protein, nucleic acids, ligands, ions; waters and
   hydrogens only with the flags).
7. **Errors.** A structure without protein residues, an empty selection, and a selected
   coordinate that is not finite or beyond 1e5 A are errors (for every selection).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

#: Bump when the policy changes: stores built with another version are rebuilt.
POLICY_VERSION = 1

SELECTIONS = ("ca", "backbone", "heavy", "all")
BACKBONE = frozenset({"N", "CA", "C", "O"})
HYDROGENS = frozenset({"H", "D"})
WATER_NAMES = frozenset({"HOH", "WAT", "DOD", "H2O", "OH2", "TIP", "TIP3", "SOL", "SPC"})
#: Largest accepted |coordinate| in Angstrom (PDB's own format cannot exceed 1e4).
MAX_ABS_COORD = 1e5
#: CA-CA distance under which a HETATM amino acid counts as linked into its chain.
LINK_CA_DISTANCE = 4.3

#: Residue-type vocabulary of the store's features: 20 standard amino acids + unknown.
RESIDUE_VOCAB: tuple[str, ...] = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "UNK",
)  # fmt: skip
UNKNOWN_CODE = len(RESIDUE_VOCAB) - 1
ONE_LETTER = "ARNDCQEGHILKMFPSTWYV"

#: Residue kinds: amino acid, water, other tabulated component, not in gemmi's table.
AA, WATER, OTHER, UNKNOWN = "aa", "water", "other", "unknown"


class StructureError(Exception):
    """A structure file that cannot give a point cloud; ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class ParseFailure:
    """Error value of :func:`data_pipeline.parse.try_read_structure` (one per bad file)."""

    path: str
    reason: str

    def __bool__(self) -> bool:  # a failure is falsy: ``if cloud := try_read(...)``
        return False


@dataclass
class PointCloud:
    """Selected atoms of one structure: coordinates plus per-point annotations.

    ``coords`` is float32 ``[n, 3]``; ``element``, ``atom_name``, ``res_name``, ``icode``
    and ``chain_id`` are string arrays ``[n]`` (blank icode is ``""``), ``res_seq`` is int32
    ``[n]``. ``meta`` holds ``method`` (upper case, e.g. ``"X-RAY DIFFRACTION"``, or None),
    ``resolution`` (Angstrom or None), ``n_models``, ``path``, ``backend``, ``format``
    (``"pdb"``/``"cif"``) and ``selection``.
    """

    id: str
    coords: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    res_name: np.ndarray
    res_seq: np.ndarray
    icode: np.ndarray
    chain_id: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def residue_codes(self) -> np.ndarray:
        """uint8 ``[n]`` indices into :data:`RESIDUE_VOCAB`."""
        return residue_codes(self.res_name)

    def chains(self) -> list[str]:
        """Chain IDs in order of first appearance."""
        return list(dict.fromkeys(self.chain_id.tolist()))

    def subset(self, mask: np.ndarray) -> PointCloud:
        """The points where ``mask`` is true, same ``id`` and a copy of ``meta``."""
        return PointCloud(
            self.id, self.coords[mask], self.element[mask], self.atom_name[mask],
            self.res_name[mask], self.res_seq[mask], self.icode[mask], self.chain_id[mask],
            dict(self.meta),
        )  # fmt: skip


# ------------------------------------------------------------- residue classifier


@lru_cache(maxsize=4096)
def residue_kind(name: str) -> str:
    """:data:`AA`, :data:`WATER`, :data:`OTHER` or :data:`UNKNOWN` for a residue name."""
    if name in WATER_NAMES:
        return WATER
    info = gemmi.find_tabulated_residue(name)
    if info is None or info.kind == gemmi.ResidueKind.UNKNOWN:
        return UNKNOWN
    if info.is_water():
        return WATER
    return AA if info.is_amino_acid() else OTHER


@lru_cache(maxsize=4096)
def residue_code(name: str) -> int:
    """Index in :data:`RESIDUE_VOCAB`; modified amino acids map to their parent (MSE->MET)."""
    info = gemmi.find_tabulated_residue(name)
    if info is None or not info.is_amino_acid():
        return UNKNOWN_CODE
    letter = info.one_letter_code.upper()
    return ONE_LETTER.index(letter) if letter in ONE_LETTER and letter != " " else UNKNOWN_CODE


def residue_codes(res_names: np.ndarray) -> np.ndarray:
    """Vectorised :func:`residue_code` (uint8)."""
    names, inverse = np.unique(np.asarray(res_names, dtype=str), return_inverse=True)
    table = np.array([residue_code(str(n)) for n in names], dtype=np.uint8)
    return table[inverse.reshape(-1)] if len(names) else np.zeros(0, np.uint8)


# --------------------------------------------------------------------- atom table


#: Field order of an :class:`AtomTable` row (plain tuples: cheap to build and index).
ROW_FIELDS = ("chain", "res_seq", "icode", "res_name", "het", "atom_name", "altloc",
              "occupancy", "element", "x", "y", "z")  # fmt: skip
_CH, _SEQ, _IC, _RN, _HET, _AN, _ALT, _OCC, _EL = range(9)


@dataclass
class AtomTable:
    """Atoms of model 1 as listed by a backend: one tuple per atom (all altlocs).

    Row fields are :data:`ROW_FIELDS`: chain (str), res_seq (int), icode ("" if blank),
    res_name, het (bool: a HETATM record), atom_name, altloc ("" if blank), occupancy
    (float), element (upper case), x, y, z (float). A backend may leave out rows the
    selection cannot use (see :func:`prefilter`: waters, residues of kind OTHER, atom
    names outside the selection, except that residues of kind UNKNOWN list all their
    atoms) but must not decide anything else.
    """

    rows: list[tuple] = field(default_factory=list)
    n_models: int = 1


def prefilter(selection: str) -> tuple[frozenset[str] | None, bool]:
    """What a backend may skip: (atom names to keep or None for all, protein residues only)."""
    if selection == "ca":
        return frozenset({"CA"}), True
    if selection == "backbone":
        return BACKBONE, True
    if selection == "heavy":
        return None, True
    return None, False


def apply_policy(
    table: AtomTable,
    selection: str,
    *,
    include_waters: bool = False,
    include_hydrogens: bool = False,
) -> dict[str, np.ndarray]:
    """Apply the module's policy to ``table``; arrays of the selected points, file order.

    Raises ``ValueError`` with a reason for structures that give no point cloud.
    """
    keep_h = selection == "all" and include_hydrogens
    keep_w = selection == "all" and include_waters
    kind = {name: residue_kind(name) for name in {r[_RN] for r in table.rows}}
    rows = [
        r
        for r in table.rows
        if (keep_w or kind[r[_RN]] != WATER) and (keep_h or r[_EL] not in HYDROGENS)
    ]
    if any(r[_ALT] for r in rows):
        rows = _resolve_altlocs(rows)
    keys = [(r[0], r[1], r[2], r[3], r[5]) for r in rows]  # (chain, seq, icode, name, atom)
    if len(set(keys)) != len(keys):  # exact duplicates keep their first copy
        seen: set[tuple] = set()
        rows = [r for r, k in zip(rows, keys) if not (k in seen or seen.add(k))]  # type: ignore[func-returns-value]

    # Residues in order of first appearance, keyed (chain, seq, icode, name).
    residues: dict[tuple, _Residue] = {}
    for r in rows:
        key = r[:4]
        res = residues.get(key)
        if res is None:
            res = residues[key] = _Residue(kind[r[_RN]], r[_HET])
        elif not r[_HET]:
            res.het = False
        name = r[_AN]
        if name == "CA":
            if res.ca is None:
                res.ca = r[9:12]
        elif name == "N" or name == "C":
            res.n_or_c.add(name)
    protein = _protein_residues(residues)
    if not protein:
        raise ValueError("no protein residues (amino acids of a polymer chain) in model 1")

    if selection == "ca":
        chosen = [r for r in rows if r[_AN] == "CA" and r[:4] in protein]
    elif selection == "backbone":
        chosen = [r for r in rows if r[_AN] in BACKBONE and r[:4] in protein]
    elif selection == "heavy":
        chosen = [r for r in rows if r[:4] in protein]
    else:
        chosen = rows
    if not chosen:
        raise ValueError(f"selection {selection!r} is empty")

    cols = list(zip(*chosen))
    coords = np.array(cols[9:12], dtype=np.float64).T
    if not np.isfinite(coords).all():
        raise ValueError("non-finite coordinate")
    if np.abs(coords).max() > MAX_ABS_COORD:
        raise ValueError(f"coordinate beyond {MAX_ABS_COORD:g} A (max |x| = {np.abs(coords).max():.4g})")
    return {
        "coords": np.ascontiguousarray(coords, dtype=np.float32),
        "element": np.array(cols[_EL], dtype=str),
        "atom_name": np.array(cols[_AN], dtype=str),
        "res_name": np.array(cols[_RN], dtype=str),
        "res_seq": np.array(cols[_SEQ], dtype=np.int32),
        "icode": np.array(cols[_IC], dtype=str),
        "chain_id": np.array(cols[_CH], dtype=str),
    }


def _resolve_altlocs(rows: list[tuple]) -> list[tuple]:
    """Rule 3 of the policy (altlocs): at most one labelled row per atom."""
    labelled = [(i, r) for i, r in enumerate(rows) if r[_ALT]]
    drop: set[int] = set()
    # Microheterogeneity: one residue name per position among labelled atoms, decided by
    # the labelled CA atoms when there are any (so that the choice does not depend on
    # which other atoms a backend listed), else by all labelled atoms.
    best_name: dict[tuple, tuple[bool, float, str, str]] = {}
    names_at: dict[tuple, set[str]] = defaultdict(set)
    for _, r in labelled:
        pos = r[:3]
        names_at[pos].add(r[_RN])
        cand = (r[_AN] != "CA", -r[_OCC], r[_ALT], r[_RN])
        if pos not in best_name or cand < best_name[pos]:
            best_name[pos] = cand
    for i, r in labelled:
        if len(names_at[r[:3]]) > 1 and r[_RN] != best_name[r[:3]][3]:
            drop.add(i)
    # Per atom: a blank copy wins, else the highest occupancy, ties to the first label.
    blank_atoms = {r[:4] + (r[_AN],) for r in rows if not r[_ALT]}
    best: dict[tuple, tuple[float, str, int]] = {}
    for i, r in labelled:
        if i in drop:
            continue
        atom = r[:4] + (r[_AN],)
        if atom in blank_atoms:
            drop.add(i)
            continue
        cand = (-r[_OCC], r[_ALT], i)
        if atom not in best or cand < best[atom]:
            best[atom] = cand
    winners = {c[2] for c in best.values()}
    drop.update(i for i, _ in labelled if i not in winners)
    return [r for i, r in enumerate(rows) if i not in drop]


@dataclass
class _Residue:
    kind: str
    het: bool
    ca: tuple[float, float, float] | None = None
    n_or_c: set[str] = field(default_factory=set)

    def linkable(self) -> bool:
        """May be a chain member: a tabulated amino acid with CA, or unknown with N, CA, C."""
        if self.ca is None:
            return False
        return self.kind == AA or (self.kind == UNKNOWN and len(self.n_or_c) == 2)


def _protein_residues(residues: dict[tuple, _Residue]) -> set[tuple]:
    """Rule 5 of the policy: amino-acid ATOM residues, and linked HETATM/unknown ones."""
    protein = {k for k, r in residues.items() if r.kind == AA and not r.het}
    if not any(r.linkable() for k, r in residues.items() if k not in protein):
        return protein  # nothing left that a CA link could make protein
    chains: dict[str, list[tuple]] = defaultdict(list)
    for key, res in residues.items():
        if res.linkable():
            chains[key[0]].append(key)
    for members in chains.values():
        members.sort(key=lambda key: (key[1], key[2]))  # sequence order, not file order
        for j, key in enumerate(members):
            if key in protein:
                continue
            here = residues[key].ca
            for k in (j - 1, j + 1):
                if 0 <= k < len(members):
                    other = residues[members[k]].ca
                    if sum((a - b) ** 2 for a, b in zip(here, other)) <= LINK_CA_DISTANCE**2:  # type: ignore[arg-type]
                        protein.add(key)
                        break
    return protein

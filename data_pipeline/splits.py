"""Deterministic train/val/test splits: connected components of dependent clouds.

Rule
----
Clouds that are not independent must land in the same split. Two clouds are *linked*
when they share

a. a **group key**:

   * for a benchmark file named ``<ID>_<anything>`` or ``<ID>-<anything>``
     (``1A2K_r_u.pdb``, ``1A2K_l_b-matched.pdb``, ``2r6g-TM_bound.pdb``), the complex ID
     before the first underscore (or dash), upper-cased, when it looks like a PDB ID (a
     digit and three alphanumerics);
   * otherwise the entry ID read from the file (``PointCloud.id``), upper-cased; all
     chains of one entry (``per_chain=True``) share it;
   * failing both, the file stem;

b. the same **exact residue sequence** (:func:`residue_sequence`, hashed by
   :func:`sequence_key`): benchmark sets reuse one unbound PDB entry as a partner of
   several complexes (BM5: lysozyme, trypsin, ...), and the same entry may sit in
   another corpus folder under another name. A sequence with fewer than
   :data:`MIN_LINK_RESIDUES` known residues (empty, all-unknown, a short peptide)
   links nothing;

c. the **entry ID read from the file**, when it is a real PDB ID (:func:`entry_link`):
   it joins the group key of that ID, so two files of one entry (or a complex's partner
   file and that entry's own file) share a split even when their names differ;

d. optionally (a build's ``split_identity``), a **homology cluster** of their protein
   chains: chains whose sequences are at least ``split_identity`` identical
   (:mod:`data_pipeline.homology`: best local alignment, identical residues over the
   shorter chain) and whose alignment has at least
   :data:`~data_pipeline.homology.MIN_IDENTICAL` (20) identical residues are clustered
   by single linkage, and a cloud links to the cluster of each of its chains. Chains
   with fewer than :data:`HOMOLOGY_MIN_RESIDUES` known residues take no part. Both
   limits are there because a local alignment of a short chain reaches 30% of its
   length by chance against a large share of all proteins (0.7% of random pairs at
   30-39 residues), which would merge most of a corpus into one component.

Links are transitive: the split of a cloud is the split of its connected component,
:func:`assign_split` of the smallest group key in it (:func:`component_splits`), so
the result does not depend on the order of the input.

**Oversized components** (:func:`oversized_components`): a component that hashes to a
held-out split (any but the largest, normally ``val`` or ``test``) and alone holds more
clouds than that split's whole target (its fraction of the build's clouds) goes to the
largest split instead, so no held-out split ends far above twice its target. Rule d's
single linkage can join a third of a corpus into one component; by its hash alone it
would land in ``test`` one time in ten and make ``test`` more than three times its
size. In a small corpus the rule can leave a held-out split empty (three complexes of
four files, 0.5/0.25/0.25: each overfills a quarter of 12 clouds). The build summary
names how many components moved.

:func:`assign_split` maps a key to a split with the first 64 bits of its sha256, so the
split of a key never depends on which other keys exist. **Stability** is weaker than
with group keys alone: adding entries never moves an existing cloud *unless* a new
cloud links its component to another one (a shared sequence or entry) whose smallest
key is smaller and hashes to another split, then the whole merged component moves
together; or a component crosses its held-out split's size limit (it grows past it, or
the corpus grows until it fits). A component that merges with nothing and stays under
the limit keeps the split of its own key.

Not covered: without rule d, near-identical sequences (point mutants, homologues,
different construct boundaries) do not link; rules a-c remove exact duplicates only.
Rule d's prefilter is heuristic (on shared/pdb it found 97% of the pairs of chains of
30 or more residues at 30% identity and all at 50%; see
:mod:`data_pipeline.homology` and ``benchmarks/bench_homology.py``); identity that comes
from low-complexity runs alone (poly-Gln, poly-Ala traces) does not link; and single
linkage lets a multi-domain chain or a complex join the clusters of its parts.
:data:`SPLIT_RULE_VERSION` enters the store configuration, so that a store built with
another rule is never taken as up to date (a build refuses it, naming ``split_rule``,
or replaces it with ``overwrite``). A built store records, per cloud in
``entries.jsonl``, its ``group``, ``sequence_sha256`` (None: links nothing) and
``split_key`` (the component's key that decided its split).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from data_pipeline.structure import ONE_LETTER, OTHER, WATER, PointCloud, residue_code, residue_kind

SPLIT_NAMES = ("train", "val", "test")
#: Bump when the rule changes: it enters the store configuration (stores are rebuilt).
#: 1: group key only; 2: components of group key, exact sequence and entry ID;
#: 3: an oversized component goes to the largest split.
SPLIT_RULE_VERSION = 3
#: Bump when the homology link (rule d) changes. It enters the configuration only of
#: stores built with ``split_identity``, so the others are not rebuilt for it.
#: 1 (no key: split rules 2-3): identity alone; 2: also ``homology.MIN_IDENTICAL``
#: identical residues (short chains no longer link by chance).
HOMOLOGY_RULE_VERSION = 2
#: Fewest known (non-``X``) residues for a sequence to link clouds.
MIN_LINK_RESIDUES = 10
#: Fewest known residues for a chain to join a homology cluster (rule d). With identity
#: alone (homology rule 1) and 10, 98% of the chains of shared/pdb fell into one cluster at
#: 30% identity; with ``homology.MIN_IDENTICAL`` the largest holds 147 of 2,049 chains
#: at 10 as at 30, and 30 keeps chains of 20-29 residues out of the exhaustive pairs, the
#: slow part of the search (``benchmarks/bench_homology.py``).
HOMOLOGY_MIN_RESIDUES = 30
_COMPLEX_PREFIX = re.compile(r"^([0-9][A-Za-z0-9]{3})[_\-]")
_PDB_ID = re.compile(r"^[0-9][A-Za-z0-9]{3}$")
_REAL_PDB_ID = re.compile(r"^[1-9][A-Za-z0-9]{3}$")  # PDB IDs never start with 0
#: One letter per :data:`RESIDUE_VOCAB` code (the 20 amino acids in vocabulary order, X).
_LETTERS = ONE_LETTER + "X"


def group_key(file_stem: str, entry_id: str | None = None) -> str:
    """The group key of a cloud (rule a of the module)."""
    m = _COMPLEX_PREFIX.match(file_stem)
    if m:
        return m.group(1).upper()
    if entry_id:
        return entry_id.upper()
    return file_stem


def entry_link(entry_id: str | None) -> str | None:
    """The entry ID as a group key to link to (rule c), or None when it is not a real
    PDB ID (a file stem such as ``1A2K_r_u`` standing in for a missing header)."""
    if entry_id and _REAL_PDB_ID.match(entry_id):
        return entry_id.upper()
    return None


def residue_sequence(
    chain_id: np.ndarray, res_seq: np.ndarray, icode: np.ndarray, res_name: np.ndarray
) -> str:
    """One letter per residue of a cloud's points (any selection), chains in order of
    first appearance, residues in point order within a chain; ``X`` for an unknown amino
    acid. Waters and tabulated non-amino acids (ligands, nucleotides: selection ``all``)
    are left out. A residue is a run of points with the same (chain, number, insertion
    code, name)."""
    n = len(res_name)
    if n == 0:
        return ""
    chain_id, res_name = np.asarray(chain_id), np.asarray(res_name)
    new = np.ones(n, dtype=bool)
    new[1:] = (
        (chain_id[1:] != chain_id[:-1])
        | (np.asarray(res_seq)[1:] != np.asarray(res_seq)[:-1])
        | (np.asarray(icode)[1:] != np.asarray(icode)[:-1])
        | (res_name[1:] != res_name[:-1])
    )
    starts = np.flatnonzero(new)
    chains, names = chain_id[starts], res_name[starts]
    uniq, first = np.unique(chains, return_index=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    order = np.argsort(rank[np.searchsorted(uniq, chains)], kind="stable")
    uniq_names, inverse = np.unique(names[order], return_inverse=True)
    letters = np.array(
        ["" if residue_kind(name) in (WATER, OTHER) else _LETTERS[residue_code(name)] for name in uniq_names.tolist()],
        dtype=object,
    )
    return "".join(letters[inverse.reshape(-1)].tolist())


def cloud_sequence(cloud: PointCloud, mask: np.ndarray | None = None) -> str:
    """:func:`residue_sequence` of a cloud's points (all, or those of ``mask``)."""
    arrays = (cloud.chain_id, cloud.res_seq, cloud.icode, cloud.res_name)
    if mask is not None:
        arrays = tuple(a[mask] for a in arrays)
    return residue_sequence(*arrays)


def chain_sequences(cloud: PointCloud) -> dict[str, str]:
    """The residue sequence of each chain of ``cloud``, in the cloud's chain order."""
    return {chain: cloud_sequence(cloud, cloud.chain_id == chain) for chain in cloud.chains()}


def sequence_key(sequence: str) -> str | None:
    """sha256 of a residue sequence (rule b), or None when it has fewer than
    :data:`MIN_LINK_RESIDUES` known residues and must link nothing."""
    if len(sequence) - sequence.count("X") < MIN_LINK_RESIDUES:
        return None
    return hashlib.sha256(sequence.encode("ascii")).hexdigest()


def component_keys(
    groups: Sequence[str],
    sequences: Sequence[str | None] | None = None,
    entries: Sequence[str | None] | None = None,
    clusters: Sequence[Sequence[str]] | None = None,
) -> list[str]:
    """The key that decides each cloud's split: the smallest group key of its component.

    Cloud ``i`` has group key ``groups[i]``, sequence key ``sequences[i]`` (from
    :func:`sequence_key`; None links nothing), linked entry ID ``entries[i]`` (from
    :func:`entry_link`; None links nothing) and the homology cluster keys of its chains
    ``clusters[i]`` (rule d; empty links nothing). Clouds sharing a group key, a
    sequence key or a cluster key, or whose entry ID equals another's entry ID or group
    key, are in one component.
    """
    n = len(groups)
    sequences = [None] * n if sequences is None else list(sequences)
    entries = [None] * n if entries is None else list(entries)
    clusters = [()] * n if clusters is None else list(clusters)
    if not len(sequences) == len(entries) == len(clusters) == n:
        raise ValueError(
            f"{n} groups but {len(sequences)} sequences, {len(entries)} entries and {len(clusters)} clusters"
        )
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(a: tuple[str, str], b: tuple[str, str]) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for group, seq, entry, chain_clusters in zip(groups, sequences, entries, clusters):
        node = ("g", group)  # entry IDs share the namespace of group keys (rule c)
        find(node)
        if seq is not None:
            union(node, ("s", seq))
        if entry is not None:
            union(node, ("g", entry))
        for cluster in chain_clusters:
            union(node, ("h", cluster))
    smallest: dict[tuple[str, str], str] = {}
    for group in groups:
        root = find(("g", group))
        if root not in smallest or group < smallest[root]:
            smallest[root] = group
    return [smallest[find(("g", group))] for group in groups]


def component_splits(
    groups: Sequence[str],
    sequences: Sequence[str | None] | None = None,
    entries: Sequence[str | None] | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    clusters: Sequence[Sequence[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """(split, component key) of every cloud: :func:`assign_split` of
    :func:`component_keys`, but the largest split for :func:`oversized_components` (see
    the module rule)."""
    keys = component_keys(groups, sequences, entries, clusters)
    oversized = oversized_components(keys, fractions)
    largest = largest_split(fractions)
    split_of = {k: largest if k in oversized else assign_split(k, fractions) for k in set(keys)}
    return [split_of[k] for k in keys], keys


def largest_split(fractions: Sequence[float]) -> str:
    """The split with the largest fraction (the first of a tie): ``train`` as a rule."""
    fr = check_fractions(fractions)
    return SPLIT_NAMES[fr.index(max(fr))]


def oversized_components(keys: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> set[str]:
    """The components (named by ``keys``, one per cloud) whose key hashes to a split other
    than the largest and that hold more clouds than that split's whole target (its
    fraction of all ``len(keys)`` clouds): with one, the split would end at more than
    twice its target. A single cloud is never oversized: it cannot be divided, and in a
    corpus so small that one cloud is too many for a split, moving every one would leave
    no held-out split at all."""
    fr = check_fractions(fractions)
    largest, n = largest_split(fr), len(keys)
    oversized = set()
    for key, size in Counter(keys).items():
        split = assign_split(key, fr)
        if size > 1 and split != largest and size > fr[SPLIT_NAMES.index(split)] * n:
            oversized.add(key)
    return oversized


def component_summary(keys: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, int | str]:
    """``{"count", "largest", "largest_key", "oversized", "oversized_clouds"}`` of the
    components named by ``keys`` (one per cloud, from :func:`component_keys`): a
    component much larger than a split's share keeps that split's size far from its
    fraction; ``oversized`` of them (with ``oversized_clouds`` clouds) went to the
    largest split instead of their own (:func:`oversized_components`)."""
    sizes = Counter(keys)
    key, largest = min(sizes.items(), key=lambda kv: (-kv[1], kv[0]), default=("", 0))  # ties: smallest key
    oversized = oversized_components(keys, fractions)
    return {"count": len(sizes), "largest": largest, "largest_key": key, "oversized": len(oversized),
            "oversized_clouds": sum(sizes[k] for k in oversized)}


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three non-negative numbers summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != len(SPLIT_NAMES):
        raise ValueError(f"split fractions must be 3 numbers (train, val, test), got {len(fr)}")
    if any(not math.isfinite(f) or f < 0 for f in fr):
        raise ValueError(f"split fractions must be finite and >= 0, got {fr}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fr} (sum {sum(fr):g})")
    return fr  # type: ignore[return-value]


def split_point(key: str) -> float:
    """A uniform number in [0, 1) from the sha256 of ``key``."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(entry_key: str, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a group key, stable across builds."""
    fr = check_fractions(fractions)
    u = split_point(entry_key)
    edge = 0.0
    for name, f in zip(SPLIT_NAMES, fr):
        edge += f
        if u < edge:
            return name
    return next(n for n, f in zip(reversed(SPLIT_NAMES), reversed(fr)) if f > 0)

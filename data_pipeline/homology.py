"""Homology links between protein chains: local-alignment identity behind a k-mer prefilter.

Definitions
-----------
**Identity** (CD-HIT's convention). For two sequences ``a`` and ``b`` of one-letter codes
(the 20 amino acids and ``X``, unknown), ``identity(a, b) = I / min(len(a), len(b))``,
where ``I`` is the number of aligned pairs with the same letter, ``X`` never counting,
in the best *local* alignment of ``a`` and ``b`` (Smith-Waterman, Biopython's
``PairwiseAligner``: BLOSUM62, a gap of length ``n`` scores ``-12 - (n - 1)``, which is
BLAST's protein default "existence 11, extension 1"). Of several optimal alignments the
first that Biopython returns for the pair in sorted order is used, so the identity is
symmetric. It is 0 when no alignment scores above 0. The denominator is the full length
of the shorter sequence, ``X`` included, so ``identity(a, a) = 1`` only without ``X``.

**Links.** Two sequences are *homologous* at ``min_identity`` when both have at least
``min_residues`` known (non-``X``) residues and ``identity >= min_identity``; identical
strings with enough known residues are always homologous (the exact rule of
:mod:`data_pipeline.splits`, whatever their ``X``). :func:`homology_keys` gives the
single-linkage clusters (connected components) of that relation. Beware short
sequences: the best local alignment of a 10-20 residue peptide reaches 0.3 of its length
by chance with about a quarter of the chains of shared/pdb, so at ``min_identity=0.3``
with ``min_residues=10`` about 2,000 of its 2,049 chains form one cluster (1,250 at
0.4); with ``min_residues=30`` the largest has 195 (145 at 0.4; see
``benchmarks/bench_homology.py``).

**Prefilter.** Aligning all pairs is quadratic (about 1 ms per pair of 300 residues).
Only these pairs are aligned (:func:`candidate_pairs`):

* pairs whose shorter sequence has fewer than :data:`EXHAUSTIVE_BELOW` residues, all of
  them (they are cheap, and their chance alignments carry no shared k-mers);
* other pairs with a *diagonal band* of shared k-mers (FASTA's diagonal, BLAST's
  two-hit idea): every pair of equal k-mers (``k`` letters, no ``X``, and not repeated
  more than :data:`MAX_REPEATS` times in its sequence) at positions ``p`` in ``a`` and
  ``q`` in ``b``, ``a`` before ``b`` in sorted order, is a hit on diagonal ``p - q``;
  the pair passes when some window of :data:`BAND` consecutive diagonals (windows start
  at every multiple of ``BAND // 2``) holds at least ``max(MIN_HITS, HITS_PER_RESIDUE * min(len(a), len(b)))`` hits;
* and, in both cases, the pairs that pass the exact composition bound
  ``I <= sum over letters c != X of min(count_a(c), count_b(c))``.

The bound is exact; the band test is a heuristic. It misses pairs whose identical
residues are scattered (few runs of ``k`` identical letters) or spread over many
diagonals by indels: in practice pairs just above 0.3. Against all-pairs alignment of
the 1,326 distinct chains of shared/pdb with 30 or more known residues (878 k pairs, 20
minutes on one core: ``benchmarks/bench_homology.py --subset 5000 --seeds 0
--min-residues 30``) the prefilter aligned 24 k pairs and kept 95.3% of the 5,182
pairs at 0.3, 99.9% at 0.4 and all at 0.5 and 0.9 (it never links a pair that
alignment does not). Its constants were tuned on that set for the hardest case, 0.3, so its cost does not fall at
higher thresholds; they assume ``k = 3``: a smaller ``k`` passes many more pairs
(slower, not less exact), a larger one misses more. Recall on other data is measured by
``benchmarks/bench_homology.py``.

**Cost.** The k-mer hits of all pairs grow with the square of the number of distinct
chains: on random chains of 100-400 residues with natural amino-acid frequencies,
:func:`homology_keys` at 0.3 took 0.9 s for 1,000 distinct chains, 3.2 s for 2,000 and
11.9 s for 4,000 (one core of this project's CPU machine, 0.5 GB); by the square law, about
two hours for the 100,000 distinct chains of a whole PDB.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence

import numpy as np
from Bio.Align import PairwiseAligner, substitution_matrices
from tqdm import tqdm

from data_pipeline.splits import MIN_LINK_RESIDUES
from data_pipeline.structure import ONE_LETTER

#: Accepted letters: the 20 amino acids, then ``X`` (code 20).
ALPHABET = ONE_LETTER + "X"
#: Width (diagonals) of a prefilter window, and the least k-mer hits in one.
BAND = 12
MIN_HITS = 6
#: Hits required per residue of the shorter sequence (when above :data:`MIN_HITS`).
HITS_PER_RESIDUE = 0.04
#: Pairs whose shorter sequence is shorter than this are all aligned.
EXHAUSTIVE_BELOW = 40
MAX_K = 8  # 21**k * len(sequences) must fit in int64
_X = len(ONE_LETTER)
_CODE = np.full(256, 255, dtype=np.uint8)
_CODE[np.frombuffer(ALPHABET.encode("ascii"), np.uint8)] = np.arange(len(ALPHABET))
_BLOCK_HITS = 1 << 21  # hits expanded at once, cut between sequences (~100 MB unless one
#                        sequence alone has more hits: bounded by MAX_REPEATS)
#: A k-mer that occurs more than this many times in one sequence (a low-complexity run,
#: e.g. a poly-Ala trace) takes no part in the band test of that sequence, as BLAST masks
#: such regions: unmasked, one 1,000-residue poly-Ala chain against 40 others takes 80 s
#: and 1.8 GB.
MAX_REPEATS = 8


def make_aligner() -> PairwiseAligner:
    """The aligner of the identity definition (local, BLOSUM62, gaps -12 / -1)."""
    aligner = PairwiseAligner()
    aligner.substitution_matrix = substitution_matrices.load("BLOSUM62")
    aligner.open_gap_score, aligner.extend_gap_score = -12.0, -1.0
    aligner.mode = "local"
    return aligner


def identity(a: str, b: str, aligner: PairwiseAligner | None = None) -> float:
    """Identical residues of the best local alignment / length of the shorter sequence."""
    for name, s in (("a", a), ("b", b)):
        _check_sequence(name, s)
    return _identity(a, b, aligner or make_aligner())


def _identity(a: str, b: str, aligner: PairwiseAligner) -> float:
    if not a or not b:
        return 0.0
    if a > b:
        a, b = b, a
    alignments = aligner.align(a, b)
    if alignments.score <= 0:
        return 0.0
    x, y = np.frombuffer(a.encode("ascii"), np.uint8), np.frombuffer(b.encode("ascii"), np.uint8)
    (s1, *ends1), (s2, *ends2) = alignments[0].coordinates.tolist()
    same = 0
    for e1, e2 in zip(ends1, ends2):  # columns where both advance are aligned blocks
        if e1 > s1 and e2 > s2:
            same += int(np.count_nonzero((x[s1:e1] == y[s2:e2]) & (x[s1:e1] != ord("X"))))
        s1, s2 = e1, e2
    return same / min(len(a), len(b))


def candidate_pairs(
    sequences: Sequence[str], min_identity: float, *, k: int = 3, min_residues: int = MIN_LINK_RESIDUES
) -> np.ndarray:
    """``[m, 2]`` index pairs ``i < j`` of ``sequences`` that pass the prefilter (module
    docstring), sorted by decreasing band hits. Identical strings are not special here."""
    seqs = _check_args(sequences, min_identity, k, min_residues)
    order = np.argsort(np.array(seqs, dtype=object), kind="stable") if seqs else np.zeros(0, np.int64)
    pairs = order[_candidates([seqs[i] for i in order], min_identity, k, min_residues)]  # sorted: canonical
    return np.sort(pairs, axis=1).astype(np.int64).reshape(-1, 2)


def homologous_pairs(
    sequences: Sequence[str],
    min_identity: float,
    *,
    k: int = 3,
    min_residues: int = MIN_LINK_RESIDUES,
    progress: bool = False,
) -> list[tuple[int, int]]:
    """All index pairs ``(i, j)``, ``i < j``, of homologous sequences (module docstring),
    sorted. Identical strings are paired without alignment; the others are aligned when
    the prefilter passes them."""
    uniq, inverse = _unique(_check_args(sequences, min_identity, k, min_residues))
    links, _ = _search(uniq, min_identity, k, min_residues, progress, all_pairs=True)
    members: list[list[int]] = [[] for _ in uniq]
    for i, u in enumerate(inverse.tolist()):
        members[u].append(i)
    out = [(min(i, j), max(i, j)) for u, v in links for i in members[u] for j in members[v]]
    for u, m in enumerate(members):  # copies of one string
        if _linkable(uniq[u], min_residues):
            out += [(i, j) for n, i in enumerate(m) for j in m[n + 1 :]]
    return sorted(out)


def homology_keys(
    sequences: Sequence[str],
    min_identity: float,
    *,
    k: int = 3,
    min_residues: int = MIN_LINK_RESIDUES,
    progress: bool = False,
) -> list[str | None]:
    """Per sequence, the sha256 of the smallest (``str`` order) sequence of its cluster
    (single linkage of :func:`homologous_pairs`), or None when it has fewer than
    ``min_residues`` known residues. A sequence linked to nothing gets the sha256 of
    itself, i.e. :func:`data_pipeline.splits.sequence_key` at the default
    ``min_residues``. Keys do not depend on the order of ``sequences``; a pair is not
    aligned once its sequences are already in one cluster."""
    uniq, inverse = _unique(_check_args(sequences, min_identity, k, min_residues))
    _, root = _search(uniq, min_identity, k, min_residues, progress, all_pairs=False)
    keys = [
        hashlib.sha256(uniq[r].encode("ascii")).hexdigest() if _linkable(s, min_residues) else None
        for s, r in zip(uniq, root)
    ]
    return [keys[u] for u in inverse.tolist()]


# ------------------------------------------------------------------------ search


def _search(
    uniq: list[str], min_identity: float, k: int, min_residues: int, progress: bool, all_pairs: bool
) -> tuple[list[tuple[int, int]], list[int]]:
    """(homologous pairs, cluster of each sequence) of sorted distinct sequences; a
    cluster is named by its smallest index. With ``all_pairs=False`` the pairs are only
    enough to give the clusters (pairs already connected are not aligned)."""
    pairs = _candidates(uniq, min_identity, k, min_residues, progress)
    parent = list(range(len(uniq)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    aligner, links = make_aligner(), []
    for i, j in tqdm(pairs.tolist(), desc="aligning", unit="pair", disable=not progress):
        ri, rj = find(i), find(j)
        if not all_pairs and ri == rj:
            continue
        if _identity(uniq[i], uniq[j], aligner) >= min_identity:
            links.append((i, j))
            parent[max(ri, rj)] = min(ri, rj)  # a root stays the smallest of its cluster
    return links, [find(u) for u in range(len(uniq))]


def _candidates(
    seqs: list[str], min_identity: float, k: int, min_residues: int, progress: bool = False
) -> np.ndarray:
    """:func:`candidate_pairs` without the checks. The exhaustive part grows as (short
    sequences) x (all sequences): fine for thousands of chains, not for a whole PDB."""
    n = len(seqs)
    lens = np.fromiter(map(len, seqs), np.int64, n)
    cat = _CODE[np.frombuffer("X".join(seqs).encode("ascii"), np.uint8)]  # X separates
    owner = np.repeat(np.arange(n), lens + 1)[: len(cat)]
    comp = np.bincount(owner * 21 + cat, minlength=21 * n).reshape(n, 21)[:, :_X]
    ok = comp.sum(1) >= min_residues
    hits = _band_pairs(cat, owner, lens, ok, k, progress)
    short = np.flatnonzero(ok & (lens < EXHAUSTIVE_BELOW))
    others = np.flatnonzero(ok)
    si, so = np.repeat(short, len(others)), np.tile(others, len(short))
    keep = si != so
    ex = np.stack([np.minimum(si, so)[keep], np.maximum(si, so)[keep]], axis=1)
    pairs = np.concatenate([hits, np.stack([ex[:, 0], ex[:, 1], np.zeros(len(ex), np.int64)], 1)])
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0], -pairs[:, 2]))]  # most hits first
    pair_id = pairs[:, 0] * n + pairs[:, 1]
    _, first = np.unique(pair_id, return_index=True)
    pairs = pairs[np.sort(first)]
    i, j = pairs[:, 0], pairs[:, 1]
    bound = np.minimum(comp[i], comp[j]).sum(1) / np.minimum(lens[i], lens[j])
    return pairs[bound >= min_identity, :2]


def _band_pairs(
    cat: np.ndarray, owner: np.ndarray, lens: np.ndarray, ok: np.ndarray, k: int, progress: bool = False
) -> np.ndarray:
    """``[m, 3]`` rows (i, j, best window hits), ``i < j``, of the pairs passing the band test
    (``progress``: a bar of the k-mer hits counted, the part that grows quadratically)."""
    n, width = len(lens), len(cat) - k + 1
    empty = np.zeros((0, 3), np.int64)
    if width <= 0 or n < 2:
        return empty
    code = np.zeros(width, np.int64)
    for s in range(k):
        code = code * 21 + cat[s : s + width]
    n_x = np.concatenate([[0], np.cumsum(cat == _X)])
    valid = (n_x[k:] - n_x[:width] == 0) & ok[owner[:width]]
    code, seq = code[valid], owner[:width][valid]
    pos = np.flatnonzero(valid) - (np.concatenate([[0], np.cumsum(lens + 1)[:-1]]))[seq]
    key = code * n + seq  # sorted index: by k-mer, then sequence
    _, inverse, repeats = np.unique(key, return_inverse=True, return_counts=True)
    simple = repeats[inverse] > MAX_REPEATS  # low-complexity k-mers (poly-A traces): masked
    if simple.any():
        code, seq, pos, key = code[~simple], seq[~simple], pos[~simple], key[~simple]
    order = np.argsort(key, kind="stable")
    skey, sseq, spos = key[order], seq[order], pos[order]
    lo = np.searchsorted(skey, key, "right")  # hits in later sequences only (j > i)
    count = np.searchsorted(skey, (code + 1) * n, "left") - lo
    half = max(BAND // 2, 1)
    offset = -(-int(lens.max()) // half) * half  # a multiple of half: windows anchored at diagonal 0
    n_bins = (2 * offset) // half + 2  # the last bin stays empty: windows never cross pairs
    per_seq = np.cumsum(np.bincount(seq, weights=count, minlength=n))
    cuts = np.unique(np.searchsorted(per_seq, np.arange(0, per_seq[-1], _BLOCK_HITS), "right"))
    bounds = np.searchsorted(seq, np.append(cuts, n))  # k-mer ranges of whole sequences
    out = [empty]
    bar = tqdm(total=int(per_seq[-1]), desc="k-mer hits", unit="hit", unit_scale=True, disable=not progress)
    for a, b in zip(bounds[:-1], bounds[1:]):
        c = count[a:b]
        m = int(c.sum())
        bar.update(m)
        if m == 0:
            continue
        q = np.repeat(np.arange(a, b), c)  # query k-mer of each hit
        t = np.arange(m) - np.repeat(np.cumsum(c) - c - lo[a:b], c)  # its match in the index
        pair = seq[q] * n + sseq[t]
        bins, hits = np.unique(pair * n_bins + (pos[q] - spos[t] + offset) // half, return_counts=True)
        window = hits.copy()
        adjacent = bins[1:] == bins[:-1] + 1
        window[:-1][adjacent] += hits[1:][adjacent]
        i, j = bins // n_bins // n, bins // n_bins % n
        need = np.maximum(MIN_HITS, np.ceil(HITS_PER_RESIDUE * np.minimum(lens[i], lens[j])))
        sel = window >= need
        out.append(np.stack([i[sel], j[sel], window[sel]], axis=1))
    bar.close()
    rows = np.concatenate(out)
    rows = rows[np.lexsort((-rows[:, 2], rows[:, 0] * n + rows[:, 1]))]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:, 0] != rows[:-1, 0]) | (rows[1:, 1] != rows[:-1, 1])
    return rows[first]


# -------------------------------------------------------------------- arguments


def _linkable(seq: str, min_residues: int) -> bool:
    return len(seq) - seq.count("X") >= min_residues


def _unique(seqs: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct sequences and the index of each input among them."""
    uniq = sorted(set(seqs))
    index = {s: u for u, s in enumerate(uniq)}
    return uniq, np.fromiter((index[s] for s in seqs), np.int64, len(seqs))


def _check_sequence(name: str, s: object) -> None:
    if not isinstance(s, str):
        raise ValueError(f"{name} must be a str of one-letter codes, got {type(s).__name__}")
    bad = set(s) - set(ALPHABET)
    if bad:
        raise ValueError(f"{name} has letters outside {ALPHABET!r}: {''.join(sorted(bad))!r}")


def _check_args(sequences: Sequence[str], min_identity: float, k: int, min_residues: int) -> list[str]:
    if isinstance(sequences, (str, bytes)):
        raise ValueError("sequences must be a sequence of str, not one str")
    seqs = list(sequences)
    for i, s in enumerate(seqs):
        _check_sequence(f"sequences[{i}]", s)
    if isinstance(min_identity, bool) or not isinstance(min_identity, numbers.Real) or not 0 < min_identity <= 1:
        raise ValueError(f"min_identity must be a number in (0, 1], got {min_identity!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an int in [1, {MAX_K}], got {k!r}")
    if isinstance(min_residues, bool) or not isinstance(min_residues, (int, np.integer)) or min_residues < 1:
        raise ValueError(f"min_residues must be an int >= 1, got {min_residues!r}")
    return seqs

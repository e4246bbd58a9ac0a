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
``min_residues`` known (non-``X``) residues, ``identity >= min_identity`` and the
alignment has at least ``min_identical`` identical residues (:data:`MIN_IDENTICAL`, 20);
identical strings with enough known residues are always homologous (the exact rule of
:mod:`data_pipeline.splits`, whatever their ``X``). :func:`homology_keys` gives the
single-linkage clusters (connected components) of that relation.

Single linkage needs links unlikely by chance (one joins two clusters; a whole PDB has
some 5e9 pairs), and identity alone is not that for short chains. Among random chains
with natural amino-acid frequencies, the best local alignment of a 30-39-residue chain
with a 100-400-residue one reaches identity 0.3 in 0.63% of the pairs, and at 0.3, 300
such chains glued 1,091 of 1,300 chains into one cluster. With 20 identical residues
required as well, none of those 300,000 pairs links (the most seen: 16; 19 with 40-59
residues) and no cluster forms (``benchmarks/bench_homology.py --chance 300``); the band
test below passes none of the chance pairs of 60-99-residue chains. 20 is what the
twilight zone asks of 30-50 aligned residues (Rost 1999, HSSP curve: 17-21); it changes
nothing once the shorter chain has ``20 / min_identity`` residues (67 at 0.3), and a
chain of 30-39 residues links from 67% (30) to 51% (39) identity. Coverage
(CD-HIT ``-aS 0.8``) was measured and not used: ``benchmarks/results/split_identity.md``.

**Prefilter.** Aligning all pairs is quadratic (about 1 ms per pair of 300 residues).
Only these pairs are aligned (:func:`candidate_pairs`):

* pairs whose shorter sequence has fewer than :data:`EXHAUSTIVE_BELOW` residues (and
  both ``min_identical`` known ones), all of them (few k-mers to share), a block of
  short sequences at a time, never all at once;
* other pairs with a *diagonal band* of shared k-mers (FASTA's diagonal, BLAST's
  two-hit idea): every pair of equal k-mers (``k`` letters, no ``X``, and not repeated
  more than :data:`MAX_REPEATS` times in its sequence) at positions ``p`` in ``a`` and
  ``q`` in ``b``, ``a`` before ``b`` in sorted order, is a hit on diagonal ``p - q``;
  the pair passes when some window of :data:`BAND` diagonals (starting at a multiple of
  ``BAND // 2``) holds ``max(MIN_HITS, HITS_PER_RESIDUE * min(len(a), len(b)))`` hits;
* and, in both cases, the pairs that pass the exact composition bound
  ``I <= sum over letters c != X of min(count_a(c), count_b(c))`` (against
  ``min_identity`` and ``min_identical``).

The bound is exact; the band test is a heuristic. It misses pairs whose identical
residues are scattered (few runs of ``k`` identical letters) or spread over many
diagonals by indels: in practice pairs just above 0.3. Against all-pairs alignment of
the 1,326 distinct chains of shared/pdb with 30 or more known residues (878 k pairs, 20
minutes on one core: ``benchmarks/bench_homology.py --subset 5000 --seeds 0
--min-residues 30``) the prefilter aligned 24 k pairs and kept 96.9% of the 5,008
pairs at 0.3, 99.9% at 0.4 and all at 0.5 and 0.9 (it never links a pair that
alignment does not). Its constants were tuned on that set for the hardest case, 0.3,
so its cost does not fall at higher thresholds; they assume ``k = 3``: a smaller ``k``
passes many more pairs (slower, not less exact), a larger one misses more.

**Cost** (CPU time of :func:`homology_keys` at 0.3, ``min_residues=30``, on one core of
this project's CPU machine; random chains with natural amino-acid frequencies). The band
test grows with the square of the number of chains: 1.1 s for 1,000 chains of 100-400
residues, 12 s for 4,000, 48 s for 8,000 (545 MB): about two hours for the 100,000
distinct chains of a whole PDB. The exhaustive pairs add about 0.17 ms each, (short
chains) x (all chains) of them: at 100,000 chains of which 1% are short (1.1% in
shared/pdb), about five hours more. Formed a block at a time, they keep memory at that of
the band test (400 short and 4,000 long chains: 424 MB; 1,017 MB when all were formed
at once, 450 bytes a pair).

**Workers.** ``workers=N`` runs the band test (a block of sequences per task) and the
alignments (a batch of pairs per task) in ``N`` processes (:mod:`data_pipeline.homology_pool`;
``build-dataset`` passes its ``--workers``); ``workers=1``, all in this one. The results
are the same for any ``N``; :func:`homology_keys` checks a batch against the clusters when
it is sent, so it aligns a few more pairs (3.5% on shared/pdb). The k-mer index and the
exhaustive pairs (0.1 us a pair to form, 0.15 ms to align) are made in this process. On a
2-core CPU 2 workers took 1.85 (band test) to 1.9-1.96 (alignments) times less wall time
than one, 1.6 for :func:`homology_keys` of shared/pdb (``bench_homology.py --workers 2``).
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterator, Sequence
from functools import partial

import numpy as np
from Bio.Align import PairwiseAligner, substitution_matrices
from tqdm import tqdm

from data_pipeline.homology_pool import align_candidates, ordered_map
from data_pipeline.splits import MIN_LINK_RESIDUES
from data_pipeline.structure import ONE_LETTER

#: Accepted letters: the 20 amino acids, then ``X`` (code 20).
ALPHABET = ONE_LETTER + "X"
#: Fewest identical residues in the alignment of a homologous pair (module docstring).
MIN_IDENTICAL = 20
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
_BLOCK_PAIRS = 1 << 18  # exhaustive pairs formed at once (~20 MB), whole short sequences
#: A k-mer repeated more than this in one sequence (a low-complexity run, e.g. poly-Ala)
#: is left out of its band test, as BLAST masks such regions (unmasked, one 1,000-residue
#: poly-Ala chain against 40 others took 80 s and 1.8 GB).
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
    same = identical_residues(a, b, aligner)
    return same / min(len(a), len(b)) if same else 0.0


def identical_residues(a: str, b: str, aligner: PairwiseAligner | None = None) -> int:
    """The number of identical residues (``X`` not counted) of the best local alignment:
    the numerator of :func:`identity`."""
    for name, s in (("a", a), ("b", b)):
        _check_sequence(name, s)
    return _identical(a, b, aligner or make_aligner())


def _identical(a: str, b: str, aligner: PairwiseAligner) -> int:
    if not a or not b:
        return 0
    if a > b:
        a, b = b, a
    alignments = aligner.align(a, b)
    if alignments.score <= 0:
        return 0
    x, y = np.frombuffer(a.encode("ascii"), np.uint8), np.frombuffer(b.encode("ascii"), np.uint8)
    (s1, *ends1), (s2, *ends2) = alignments[0].coordinates.tolist()
    same = 0
    for e1, e2 in zip(ends1, ends2):  # columns where both advance are aligned blocks
        if e1 > s1 and e2 > s2:
            same += int(np.count_nonzero((x[s1:e1] == y[s2:e2]) & (x[s1:e1] != ord("X"))))
        s1, s2 = e1, e2
    return same


def _linked(a: str, b: str, min_identity: float, min_identical: int, aligner: PairwiseAligner) -> bool:
    """The alignment test of a pair (module docstring, **Links**)."""
    same = _identical(a, b, aligner)
    return same >= min_identical and same / min(len(a), len(b)) >= min_identity


def candidate_pairs(
    sequences: Sequence[str],
    min_identity: float,
    *,
    k: int = 3,
    min_residues: int = MIN_LINK_RESIDUES,
    min_identical: int = MIN_IDENTICAL,
    workers: int = 1,
) -> np.ndarray:
    """``[m, 2]`` index pairs ``i < j`` of ``sequences`` that pass the prefilter (module
    docstring): the band test's by decreasing hits, then the other pairs of a short
    sequence. Identical strings are not special. All at once: the search never is.
    ``workers``: processes of the band test (module docstring)."""
    seqs = _check_args(sequences, min_identity, k, min_residues, min_identical, workers)
    order = np.argsort(np.array(seqs, dtype=object), kind="stable") if seqs else np.zeros(0, np.int64)
    band, blocks = _candidates([seqs[i] for i in order], min_identity, k, min_residues, min_identical, False, workers)
    ex = np.concatenate([np.zeros((0, 2), np.int64), *blocks])
    ex = ex[np.lexsort((ex[:, 1], ex[:, 0]))]
    pairs = order[np.concatenate([band, ex])]  # sorted: canonical
    return np.sort(pairs, axis=1).astype(np.int64).reshape(-1, 2)


def homologous_pairs(
    sequences: Sequence[str],
    min_identity: float,
    *,
    k: int = 3,
    min_residues: int = MIN_LINK_RESIDUES,
    min_identical: int = MIN_IDENTICAL,
    progress: bool = False,
    workers: int = 1,
) -> list[tuple[int, int]]:
    """All index pairs ``(i, j)``, ``i < j``, of homologous sequences (module docstring),
    sorted. Identical strings are paired without alignment; the others are aligned when
    the prefilter passes them, in ``workers`` processes (module docstring)."""
    uniq, inverse = _unique(_check_args(sequences, min_identity, k, min_residues, min_identical, workers))
    links, _ = _search(uniq, min_identity, k, min_residues, min_identical, progress, True, workers)
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
    min_identical: int = MIN_IDENTICAL,
    progress: bool = False,
    workers: int = 1,
) -> list[str | None]:
    """Per sequence, the sha256 of the smallest (``str`` order) sequence of its cluster
    (single linkage of :func:`homologous_pairs`), or None when it has fewer than
    ``min_residues`` known residues. A sequence linked to nothing gets the sha256 of
    itself, i.e. :func:`data_pipeline.splits.sequence_key` at the default
    ``min_residues``. Keys do not depend on the order of ``sequences``; a pair is not
    aligned once its sequences are already in one cluster. ``workers``: processes
    (module docstring); the keys are the same for any number."""
    uniq, inverse = _unique(_check_args(sequences, min_identity, k, min_residues, min_identical, workers))
    _, root = _search(uniq, min_identity, k, min_residues, min_identical, progress, False, workers)
    keys = [
        hashlib.sha256(uniq[r].encode("ascii")).hexdigest() if _linkable(s, min_residues) else None
        for s, r in zip(uniq, root)
    ]
    return [keys[u] for u in inverse.tolist()]


# ------------------------------------------------------------------------ search


def _search(
    uniq: list[str], min_identity: float, k: int, min_residues: int, min_identical: int, progress: bool,
    all_pairs: bool, workers: int,
) -> tuple[list[tuple[int, int]], list[int]]:
    """(homologous pairs, cluster of each sequence) of sorted distinct sequences; a
    cluster is named by its smallest index. With ``all_pairs=False`` the pairs are only
    enough to give the clusters (pairs already connected are not aligned)."""
    band, blocks = _candidates(uniq, min_identity, k, min_residues, min_identical, progress, workers)
    link = partial(_linked, min_identity=min_identity, min_identical=min_identical)
    return align_candidates(band, blocks, uniq, link, make_aligner, all_pairs, workers, progress)


def _candidates(
    seqs: list[str], min_identity: float, k: int, min_residues: int, min_identical: int, progress: bool = False,
    workers: int = 1,
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """:func:`candidate_pairs` of sorted sequences, unchecked: the ``[m, 2]`` band-test
    pairs (most hits first) and an iterator of blocks of the other short-sequence pairs."""
    n = len(seqs)
    lens = np.fromiter(map(len, seqs), np.int64, n)
    cat = _CODE[np.frombuffer("X".join(seqs).encode("ascii"), np.uint8)]  # X separates
    owner = np.repeat(np.arange(n), lens + 1)[: len(cat)]
    comp = np.bincount(owner * 21 + cat, minlength=21 * n).reshape(n, 21)[:, :_X].astype(np.int32)
    known = comp.sum(1)
    ok = known >= min_residues
    hits = _band_pairs(cat, owner, lens, ok, k, progress, workers)
    hits = hits[np.lexsort((hits[:, 1], hits[:, 0], -hits[:, 2]))]  # most hits first
    i, j = hits[:, 0], hits[:, 1]
    band = hits[_bound(comp[i], comp[j], np.minimum(lens[i], lens[j]), min_identity, min_identical), :2]
    ok &= known >= min_identical  # fewer known residues: never min_identical identical ones
    short = ok & (lens < EXHAUSTIVE_BELOW)
    near = short[i] | short[j]  # the band-test pairs (all) that an exhaustive pair would repeat
    band_ids = np.sort(i[near] * n + j[near])
    return band, _exhaustive_blocks(short, np.flatnonzero(ok), band_ids, comp, lens, min_identity, min_identical)


def _bound(ca: np.ndarray, cb: np.ndarray, shorter: np.ndarray, min_identity: float, min_identical: int) -> np.ndarray:
    """Pairs whose composition bound on identical residues (``ca``, ``cb``: letter counts
    ``[..., 20]``, broadcast; letter by letter, to keep memory low) allows a link."""
    shared = np.zeros(np.broadcast_shapes(ca.shape, cb.shape)[:-1], np.int64)
    for c in range(_X):
        shared += np.minimum(ca[..., c], cb[..., c])
    return (shared >= min_identical) & (shared / np.maximum(shorter, 1) >= min_identity)


def _exhaustive_blocks(
    is_short: np.ndarray, others: np.ndarray, band_ids: np.ndarray, comp: np.ndarray, lens: np.ndarray,
    min_identity: float, min_identical: int,
) -> Iterator[np.ndarray]:
    """``[m, 2]`` blocks of the pairs (short sequence, any other), ``i < j``, not among
    ``band_ids`` (``i * n + j``, sorted) and passing the bound: each block pairs a few
    short sequences (``is_short``) with all others (about :data:`_BLOCK_PAIRS` pairs)."""
    n, short = len(lens), np.flatnonzero(is_short)
    per_block = max(1, _BLOCK_PAIRS // max(len(others), 1))
    comp_others = comp[others]
    for start in range(0, len(short), per_block):
        block = short[start : start + per_block]
        s, o = np.repeat(block, len(others)), np.tile(others, len(block))
        keep = (o != s) & ~(is_short[o] & (o < s))  # two short sequences: paired once
        i, j = np.minimum(s, o), np.maximum(s, o)
        ids = i * n + j  # not among the sorted band_ids (np.isin would sort them for every block)
        keep &= np.searchsorted(band_ids, ids, "left") == np.searchsorted(band_ids, ids, "right")
        shorter = np.minimum(lens[block][:, None], lens[others][None, :])
        keep &= _bound(comp[block][:, None, :], comp_others[None], shorter, min_identity, min_identical).reshape(-1)
        yield np.stack([i[keep], j[keep]], axis=1)


def _band_pairs(
    cat: np.ndarray, owner: np.ndarray, lens: np.ndarray, ok: np.ndarray, k: int, progress: bool, workers: int
) -> np.ndarray:
    """``[m, 3]`` rows (i, j, best window hits), ``i < j``, of the pairs passing the band test,
    a block of query sequences at a time (:func:`_band_block`) in ``workers`` processes
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
    skey = key[order]
    lo = np.searchsorted(skey, key, "right")  # hits in later sequences only (j > i)
    count = np.searchsorted(skey, (code + 1) * n, "left") - lo
    half = max(BAND // 2, 1)
    offset = -(-int(lens.max()) // half) * half  # a multiple of half: windows anchored at diagonal 0
    n_bins = (2 * offset) // half + 2  # the last bin stays empty: windows never cross pairs
    index = (seq[order].astype(np.int32), pos[order].astype(np.int32), lens, offset, half, n_bins)
    per_seq = np.cumsum(np.bincount(seq, weights=count, minlength=n))
    size = _BLOCK_HITS if workers == 1 else max(1, min(_BLOCK_HITS, int(per_seq[-1]) // (4 * workers)))
    cuts = np.unique(np.searchsorted(per_seq, np.arange(0, per_seq[-1], size), "right"))
    bounds = np.searchsorted(seq, np.append(cuts, n))  # k-mer ranges of whole sequences
    blocks = ((seq[a:b], pos[a:b], lo[a:b], count[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if count[a:b].any())
    out = [empty]
    bar = tqdm(total=int(per_seq[-1]), desc="k-mer hits", unit="hit", unit_scale=True, disable=not progress)
    for block, rows in ordered_map(_band_block, blocks, workers, tuple, (index,)):  # state: tuple(index)
        bar.update(int(block[3].sum()))
        out.append(rows)
    bar.close()
    rows = np.concatenate(out)
    rows = rows[np.lexsort((-rows[:, 2], rows[:, 0] * n + rows[:, 1]))]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:, 0] != rows[:-1, 0]) | (rows[1:, 1] != rows[:-1, 1])
    return rows[first]


def _band_block(index: tuple, block: tuple) -> np.ndarray:
    """The rows of :func:`_band_pairs` of one block of query sequences (``block``: the
    sequence, position, first later match and number of matches of each of their k-mers;
    ``index``: each indexed k-mer's sequence and position, the lengths, the bins)."""
    sseq, spos, lens, offset, half, n_bins = index
    seq, pos, lo, count = block
    n, m = len(lens), int(count.sum())
    q = np.repeat(np.arange(len(count)), count)  # query k-mer of each hit
    t = np.arange(m) - np.repeat(np.cumsum(count) - count - lo, count)  # its match in the index
    pair = seq[q] * n + sseq[t]
    bins, hits = np.unique(pair * n_bins + (pos[q] - spos[t] + offset) // half, return_counts=True)
    window = hits.copy()
    adjacent = bins[1:] == bins[:-1] + 1
    window[:-1][adjacent] += hits[1:][adjacent]
    i, j = bins // n_bins // n, bins // n_bins % n
    need = np.maximum(MIN_HITS, np.ceil(HITS_PER_RESIDUE * np.minimum(lens[i], lens[j])))
    sel = window >= need
    return np.stack([i[sel], j[sel], window[sel]], axis=1)


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


def _check_args(
    sequences: Sequence[str], min_identity: float, k: int, min_residues: int, min_identical: int, workers: int
) -> list[str]:
    if isinstance(sequences, (str, bytes)):
        raise ValueError("sequences must be a sequence of str, not one str")
    seqs = list(sequences)
    for i, s in enumerate(seqs):
        _check_sequence(f"sequences[{i}]", s)
    if isinstance(min_identity, bool) or not isinstance(min_identity, numbers.Real) or not 0 < min_identity <= 1:
        raise ValueError(f"min_identity must be a number in (0, 1], got {min_identity!r}")
    for name, v, lo, hi, what in (("k", k, 1, MAX_K, f"an int in [1, {MAX_K}]"),
                                  ("min_residues", min_residues, 1, None, "an int >= 1"),
                                  ("min_identical", min_identical, 0, None, "an int >= 0"),
                                  ("workers", workers, 1, None, "an int >= 1")):  # fmt: skip
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
            raise ValueError(f"{name} must be {what}, got {v!r}")
    return seqs

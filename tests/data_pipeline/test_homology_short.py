"""Homology links of short chains (data_pipeline.homology, review finding 2): chance
alignments of 30-39-residue chains must not glue unrelated proteins together, and the
exhaustive short x all pairs are formed a block at a time with the same result."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_pipeline import homology
from data_pipeline.homology import (
    EXHAUSTIVE_BELOW,
    MIN_IDENTICAL,
    candidate_pairs,
    homologous_pairs,
    homology_keys,
    identical_residues,
    make_aligner,
)
from data_pipeline.splits import HOMOLOGY_MIN_RESIDUES

AMINO = "ARNDCQEGHILKMFPSTWYV"
#: Natural amino-acid frequencies (UniProt), as in the reviewer's scripts.
FREQ = np.array([8.25, 5.53, 4.06, 5.45, 1.37, 3.93, 6.75, 7.07, 2.27, 5.96,
                 9.66, 5.84, 2.42, 3.86, 4.70, 6.56, 5.34, 1.08, 2.92, 6.87])  # fmt: skip
FREQ = FREQ / FREQ.sum()


def natural(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list(AMINO), length, p=FREQ))


def mutate(rng: np.random.Generator, seq: str, fraction: float) -> str:
    """``seq`` with ``round(fraction * len)`` positions changed to another amino acid."""
    out = list(seq)
    for p in rng.choice(len(seq), round(fraction * len(seq)), replace=False):
        out[p] = rng.choice([c for c in AMINO if c != out[p]])
    return "".join(out)


def unrelated_corpus(seed: int, n_short: int, n_long: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [natural(rng, int(rng.integers(30, 40))) for _ in range(n_short)] + [
        natural(rng, int(rng.integers(100, 401))) for _ in range(n_long)
    ]


# ----------------------------------------------------------- chance links


def test_random_short_and_long_chains_form_no_giant_component() -> None:
    # 60 random 30-39-residue chains against 240 random 100-400-residue ones (no homology
    # at all). Under the old rule (identity alone: min_identical=0) about 0.7% of the
    # short x long pairs link by chance and single linkage joins a large part of them;
    # with MIN_IDENTICAL nothing links. (At PDB scale the old rule joined about 2/3 of a
    # corpus: review finding 2.)
    seqs = unrelated_corpus(0, 60, 240)
    new = Counter(homology_keys(seqs, 0.3, min_residues=HOMOLOGY_MIN_RESIDUES))
    assert max(new.values()) == 1  # every chain is its own cluster
    old = Counter(homology_keys(seqs, 0.3, min_residues=HOMOLOGY_MIN_RESIDUES, min_identical=0))
    assert max(old.values()) >= 20  # the test can see a giant component (old: ~40-60 chains)


def test_chance_alignments_of_short_chains_stay_below_min_identical() -> None:
    rng = np.random.default_rng(1)
    short = [natural(rng, int(rng.integers(30, 40))) for _ in range(12)]
    long_ = [natural(rng, int(rng.integers(100, 401))) for _ in range(150)]
    aligner = make_aligner()
    counts = np.array([identical_residues(s, t, aligner) for s in short for t in long_])
    shorter = np.array([len(s) for s in short for _ in long_])
    assert (counts >= 0.3 * shorter).sum() >= 3  # identity alone links some by chance
    assert counts.max() < MIN_IDENTICAL


# -------------------------------------------------------------- true links


@pytest.mark.parametrize("length", [36, 39, 150, 300])
def test_a_chain_with_40_percent_mutated_positions_still_links(length: int) -> None:
    rng = np.random.default_rng(length)
    base = natural(rng, length)
    mutant = mutate(rng, base, 0.4)  # identity 0.6: 22 of 36 residues, 90 of 150
    others = [natural(rng, int(rng.integers(100, 401))) for _ in range(5)]
    for threshold in (0.3, 0.5):
        assert homologous_pairs([base, mutant, *others], threshold, min_residues=HOMOLOGY_MIN_RESIDUES) == [(0, 1)]
        keys = homology_keys([base, mutant, *others], threshold, min_residues=HOMOLOGY_MIN_RESIDUES)
        assert keys[0] == keys[1] and len(set(keys)) == 6


def test_a_peptide_cut_from_a_protein_links_to_it() -> None:
    rng = np.random.default_rng(2)
    protein = natural(rng, 300)
    peptide = mutate(rng, protein[120:155], 0.2)  # 35 residues, 28 identical
    assert homologous_pairs([protein, peptide, natural(rng, 200)], 0.5, min_residues=30) == [(0, 1)]


def test_a_short_chain_needs_min_identical_identical_residues() -> None:
    # A 30-residue chain with 10 of 30 positions changed: identity 0.67 but only 20
    # identical residues links; with 11 changed (19 identical) it does not, whatever the
    # identity threshold: 19 residues are within reach of chance (module docstring).
    rng = np.random.default_rng(3)
    base = natural(rng, 30)
    for changed, linked in ((10, True), (11, False)):
        mutant = mutate(rng, base, changed / 30)
        assert identical_residues(base, mutant) == 30 - changed
        assert (homologous_pairs([base, mutant], 0.3, min_residues=30) == [(0, 1)]) is linked
    assert homologous_pairs([base, mutant], 0.3, min_residues=30, min_identical=19) == [(0, 1)]


# ---------------------------------------------------------- blocked search


def mixed_corpus(seed: int) -> list[str]:
    """Short chains (20-39 residues: some below MIN_IDENTICAL known residues), their
    mutants and copies, fragments of long chains, long chains, unknown residues."""
    rng = np.random.default_rng(seed)
    long_ = [natural(rng, int(rng.integers(60, 250))) for _ in range(25)]
    short = [natural(rng, int(rng.integers(20, EXHAUSTIVE_BELOW))) for _ in range(15)]
    frags = [p[10 : 10 + int(rng.integers(30, EXHAUSTIVE_BELOW))] for p in long_[:6]]
    mutants = [mutate(rng, s, 0.2) for s in short[:5] + frags[:3]]
    x_rich = [s[:15] + "X" * 10 + s[15:] for s in short[:3]]
    return long_ + short + frags + mutants + x_rich + short[:2]


@pytest.mark.parametrize("seed", [0, 1])
def test_blocked_candidates_equal_the_unblocked_ones(monkeypatch, seed: int) -> None:
    seqs = mixed_corpus(seed)
    for min_residues, min_identical in ((10, MIN_IDENTICAL), (10, 0), (30, MIN_IDENTICAL)):
        results = []
        for block in (1, 100, 10**9):  # 10**9: all exhaustive pairs in one block
            monkeypatch.setattr(homology, "_BLOCK_PAIRS", block)
            kw = {"min_residues": min_residues, "min_identical": min_identical}
            results.append((candidate_pairs(seqs, 0.3, **kw).tolist(), homologous_pairs(seqs, 0.3, **kw),
                            homology_keys(seqs, 0.3, **kw)))  # fmt: skip
        assert all(r == results[0] for r in results[1:]), (min_residues, min_identical)
        assert set(map(tuple, results[0][0])) == reference_candidates(seqs, 0.3, min_residues, min_identical)


def reference_candidates(seqs: list[str], min_identity: float, min_residues: int, min_identical: int) -> set:
    """The candidates as the unblocked code formed them: the band-test pairs plus every
    pair with a short sequence, all at once, then the composition bound."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(homology, "EXHAUSTIVE_BELOW", 0)
        band = {tuple(p) for p in candidate_pairs(seqs, min_identity, min_residues=min_residues,
                                                  min_identical=min_identical).tolist()}  # fmt: skip
    known = [len(s) - s.count("X") for s in seqs]
    out = set(band)
    for i in range(len(seqs)):
        for j in range(i + 1, len(seqs)):
            if min(known[i], known[j]) < min_residues or min(len(seqs[i]), len(seqs[j])) >= EXHAUSTIVE_BELOW:
                continue
            a, b = Counter(seqs[i].replace("X", "")), Counter(seqs[j].replace("X", ""))
            shared = sum((a & b).values())
            if shared >= min_identical and shared / min(len(seqs[i]), len(seqs[j])) >= min_identity:
                out.add((i, j))
    return out


def test_exhaustive_pairs_come_in_bounded_blocks(monkeypatch) -> None:
    seqs = sorted(set(unrelated_corpus(4, 30, 70)))
    assert len(seqs) == 100
    monkeypatch.setattr(homology, "_BLOCK_PAIRS", 250)
    band, blocks = homology._candidates(seqs, 0.3, 3, 30, MIN_IDENTICAL)
    sizes = [len(b) for b in blocks]
    assert len(sizes) == 15  # 30 short chains, 2 (250 // 100 partners) per block
    assert max(sizes) <= 2 * 99
    assert sum(sizes) + len(band) == len(candidate_pairs(seqs, 0.3, min_residues=30))

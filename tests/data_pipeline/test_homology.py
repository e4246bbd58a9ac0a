"""Homology links (data_pipeline.homology): the identity, the prefilter and the clusters."""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from data_pipeline.homology import (
    ALPHABET,
    MIN_IDENTICAL,
    candidate_pairs,
    homologous_pairs,
    homology_keys,
    identical_residues,
    identity,
    make_aligner,
)
from data_pipeline.parse import read_structure
from data_pipeline.splits import chain_sequences, sequence_key

AMINO = ALPHABET[:20]
ALIGNER = make_aligner()


def random_protein(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list(AMINO), length))


def substitute(rng: np.random.Generator, seq: str, fraction: float) -> str:
    """``seq`` with ``round(fraction * len)`` positions changed to another amino acid."""
    out = list(seq)
    for p in rng.choice(len(seq), int(round(fraction * len(seq))), replace=False):
        out[p] = rng.choice([c for c in AMINO if c != out[p]])
    return "".join(out)


# ------------------------------------------------------------------------ identity


@settings(max_examples=60, deadline=None)
@given(st.text(ALPHABET, max_size=60), st.text(ALPHABET, max_size=60))
def test_identity_is_symmetric_and_a_fraction(a: str, b: str) -> None:
    ab = identity(a, b, ALIGNER)
    assert ab == identity(b, a, ALIGNER)
    assert 0.0 <= ab <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.text(AMINO, min_size=1, max_size=200))
def test_identity_with_itself_is_one_without_x(a: str) -> None:
    assert identity(a, a) == 1.0


def test_identity_counts_no_x_and_divides_by_the_shorter() -> None:
    assert identity("XXXXXXXXXX", "XXXXXXXXXX") == 0.0
    assert identity("ACDEFGHIKX", "ACDEFGHIKX") == 0.9
    assert identical_residues("ACDEFGHIKX", "ACDEFGHIKX") == 9
    core = "MKTAYIAKQRQISFVKSHFSRQ"
    assert identity(core, "WWWWWWWWWW" + core + "PPPPPPPP") == 1.0  # local: a substring
    assert identity("", "ACDEFGHIK") == 0.0


# --------------------------------------------------------------------- mutants


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(100, 300), fraction=st.floats(0.0, 0.4))
def test_substitution_mutant_is_linked(seed: int, length: int, fraction: float) -> None:
    rng = np.random.default_rng(seed)
    base = random_protein(rng, length)
    mutant = substitute(rng, base, fraction)
    other = random_protein(rng, length)
    threshold = max(1 - fraction - 0.1, 0.3)
    assert homologous_pairs([base, other, mutant], threshold) == [(0, 2)]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    length=st.integers(120, 300),
    fraction=st.floats(0.0, 0.3),
    n_indels=st.integers(1, 2),
    trim=st.floats(0.0, 0.2),
)
def test_mutant_with_indels_and_truncation_is_linked(
    seed: int, length: int, fraction: float, n_indels: int, trim: float
) -> None:
    rng = np.random.default_rng(seed)
    base = random_protein(rng, length)
    variant = substitute(rng, base, fraction)
    for _ in range(n_indels):  # delete or insert 1-4 residues inside
        at, size = int(rng.integers(20, len(variant) - 20)), int(rng.integers(1, 5))
        insert = random_protein(rng, size) if rng.random() < 0.5 else ""
        variant = variant[:at] + insert + variant[at + (0 if insert else size) :]
    cut = int(trim * len(variant))
    variant = variant[cut // 2 : len(variant) - (cut - cut // 2)]
    assert homologous_pairs([variant, base], max(1 - fraction - 0.15, 0.3)) == [(0, 1)]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_unrelated_random_proteins_are_not_linked(seed: int) -> None:
    rng = np.random.default_rng(seed)
    seqs = [random_protein(rng, int(rng.integers(100, 401))) for _ in range(6)]
    assert homologous_pairs(seqs, 0.3) == []
    assert len(set(homology_keys(seqs, 0.3))) == 6


# -------------------------------------------------------------------- clusters


def chain_family(seed: int) -> tuple[str, str, str, str]:
    """a-b and b-c share half of their residues (identity 0.5), a-c and d nothing."""
    rng = np.random.default_rng(seed)
    a = random_protein(rng, 200)
    b = random_protein(rng, 100) + a[100:]
    c = b[:100] + random_protein(rng, 100)
    return a, b, c, random_protein(rng, 150)


def test_clusters_are_transitive() -> None:
    a, b, c, d = chain_family(0)
    assert identity(a, c) < 0.3 <= 0.45 <= min(identity(a, b), identity(b, c))
    assert homologous_pairs([a, b, c, d], 0.45) == [(0, 1), (1, 2)]
    keys = homology_keys([a, b, c, d], 0.45)
    assert keys[0] == keys[1] == keys[2] == hashlib.sha256(min(a, b, c).encode()).hexdigest()
    assert keys[3] == sequence_key(d)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), order=st.randoms(use_true_random=False))
def test_keys_do_not_depend_on_order_and_match_the_pairs(seed: int, order) -> None:
    a, b, c, d = chain_family(seed % 1000)
    rng = np.random.default_rng(seed)
    seqs = [a, b, c, d, substitute(rng, d, 0.2), a, "ACDEFG", random_protein(rng, 120)]
    keys = dict(zip(seqs, homology_keys(seqs, 0.45)))
    shuffled = seqs[:]
    order.shuffle(shuffled)
    assert dict(zip(shuffled, homology_keys(shuffled, 0.45))) == keys
    # the keys are the connected components of all the pairs (aligned without skipping)
    pairs = np.array(homologous_pairs(seqs, 0.45)).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(seqs),) * 2)
    label = connected_components(graph, directed=False)[1]
    for i, j in itertools.combinations(range(len(seqs)), 2):
        if keys[seqs[i]] is not None:
            assert (keys[seqs[i]] == keys[seqs[j]]) == (label[i] == label[j])


# Two chains at identity 0.6 whose k-mer hits sit near a window edge (found in review).
EDGE_A = "CVRRWGKSRYEPNFFNGLPYPKIGQGNYNWFRYDLYWYSMKGSWLINCDDTIFQEYLECDS"
EDGE_B = "CMRNWDKYRTERNFFNGNWFRYDGYRYYMRGRWCIFCWDYIWQDYYEKDW"


def test_a_pair_is_judged_on_its_own_whatever_else_is_in_the_input() -> None:
    # Windows of diagonals anchored at 0 and a canonical orientation: neither an
    # unrelated chain's length nor the input order decides whether a pair is aligned.
    rng = np.random.default_rng(0)
    alone = [0, 1] in candidate_pairs([EDGE_A, EDGE_B], 0.3).tolist()
    assert alone == ([0, 1] in candidate_pairs([EDGE_B, EDGE_A], 0.3).tolist())
    together = homology_keys([EDGE_A, EDGE_B], 0.3)
    for length in range(196, 208):
        other = random_protein(rng, length)
        for seqs in ([EDGE_A, EDGE_B, other], [EDGE_B, EDGE_A, other], [other, EDGE_B, EDGE_A]):
            i, j = sorted((seqs.index(EDGE_A), seqs.index(EDGE_B)))
            assert ([i, j] in candidate_pairs(seqs, 0.3).tolist()) == alone, (length, seqs.index(other))
        keys = homology_keys([EDGE_A, EDGE_B, other], 0.3)
        assert (keys[0] == keys[1]) == (together[0] == together[1]), length


def test_progress_shows_both_stages(capsys) -> None:
    a, b, c, d = chain_family(1)
    homology_keys([a, b, c, d], 0.45, progress=True)
    err = capsys.readouterr().err
    assert "k-mer hits" in err and "aligning" in err  # the quadratic prefilter, then the alignments
    homology_keys([a, b, c, d], 0.45)
    assert capsys.readouterr().err == ""


def test_low_complexity_runs_are_masked_from_the_band_test() -> None:
    rng = np.random.default_rng(0)
    a, b = random_protein(rng, 100) + "Q" * 60, random_protein(rng, 100) + "Q" * 60
    assert identity(a, b) >= 0.3  # by the definition, from the poly-Q run alone
    assert candidate_pairs([a, b], 0.3).tolist() == []  # masked, as BLAST masks such runs
    c = substitute(rng, a[:100], 0.3) + "Q" * 60  # a real homologue of a keeps its link
    assert candidate_pairs([a, c], 0.3).tolist() == [[0, 1]]
    traces = ["A" * 1000 + random_protein(rng, 20) for _ in range(30)]  # poly-Ala traces: no blow-up
    assert len(candidate_pairs(traces, 0.3)) == 0


def test_copies_are_paired_and_short_sequences_link_nothing() -> None:
    x_rich = "ACDEFGHIKL" + "X" * 30  # identity with itself 0.25, still a copy
    short = "ACDEFGHIK"  # 9 < MIN_LINK_RESIDUES known residues
    seqs = [x_rich, short, x_rich, short, "X" * 50]
    assert homologous_pairs(seqs, 0.9) == [(0, 2)]
    keys = homology_keys(seqs, 0.9)
    assert keys[0] == keys[2] == sequence_key(x_rich)
    assert keys[1] is keys[3] is keys[4] is None
    assert homology_keys(seqs, 0.9, min_residues=5)[1] is not None
    assert homologous_pairs([], 0.5) == [] and homology_keys([], 0.5) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"min_identity": 0}, "min_identity"),
        ({"min_identity": 1.5}, "min_identity"),
        ({"min_identity": math.nan}, "min_identity"),
        ({"min_identity": "0.3"}, "min_identity"),
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"k": 99}, "k"),
        ({"min_residues": 0}, "min_residues"),
        ({"min_identical": -1}, "min_identical"),
        ({"min_identical": 2.5}, "min_identical"),
        ({"min_identical": True}, "min_identical"),
        ({"sequences": "ACDEFGHIKL"}, "sequences"),
        ({"sequences": ["ACDEFGHIKL", 7]}, r"sequences\[1\]"),
        ({"sequences": ["ACDEFGHIKL", "acdefghikl"]}, r"sequences\[1\]"),
        ({"sequences": ["ACDEFGHIKB*"]}, r"sequences\[0\]"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    args = {"sequences": ["ACDEFGHIKL"], "min_identity": 0.5, **kwargs}
    for fn in (homologous_pairs, homology_keys, candidate_pairs):
        with pytest.raises(ValueError, match=rf"^{name} "):
            fn(**args)
    with pytest.raises(ValueError, match=r"^b "):
        identity("ACDE", "ACDZ")


# ------------------------------------------------------------------ real chains


@pytest.fixture(scope="module")
def real_chains(pdb_dir: Path) -> list[str]:
    """Distinct protein chain sequences of the first 10 complexes of BM5 (bound and
    unbound partners: identical, near-identical and unrelated chains)."""
    files = sorted((pdb_dir / "BM5-clean").glob("*.pdb*"))[:40]
    seqs = set()
    for f in files:
        seqs.update(chain_sequences(read_structure(f, selection="ca")).values())
    return sorted(seqs)


def test_prefilter_against_all_pairs_on_real_chains(real_chains: list[str]) -> None:
    seqs = [s for s in real_chains if len(s) - s.count("X") >= 10]
    assert len(seqs) >= 30
    same = {
        (i, j): identical_residues(seqs[i], seqs[j], ALIGNER) for i, j in itertools.combinations(range(len(seqs)), 2)
    }
    for threshold in (0.3, 0.5, 0.9):  # the link rule: identity and MIN_IDENTICAL identical residues
        brute = sorted(
            (i, j) for (i, j), v in same.items()
            if v >= MIN_IDENTICAL and v / min(len(seqs[i]), len(seqs[j])) >= threshold
        )  # fmt: skip
        found = homologous_pairs(seqs, threshold)
        assert set(found) <= set(brute)  # never a false link
        assert len(found) >= 0.95 * len(brute), (threshold, len(found), len(brute))
        if threshold >= 0.5:
            assert found == brute
    candidates = {tuple(p) for p in candidate_pairs(seqs, 0.3).tolist()}
    assert len(candidates) < 0.5 * len(same)  # the prefilter does prune

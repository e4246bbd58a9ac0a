"""Homology search (data_pipeline.homology): k-mer prefilter vs all-pairs alignment.

Reads the protein chains of every structure file under ``$PROTEIN_CARE_TEST_PDB``
(default ``<repo>/../shared/pdb``; about 2,000 chains, 1,360 distinct sequences) with
:func:`data_pipeline.parse.try_read_structure` (CA selection), one sequence per chain
(:func:`data_pipeline.splits.chain_sequences`). Then:

1. on random subsets of distinct sequences (``--subset`` of them, one per seed of
   ``--seeds``): brute force (every pair aligned, linked by the module's rule: identity
   and :data:`~data_pipeline.homology.MIN_IDENTICAL` identical residues) against
   :func:`~data_pipeline.homology.homologous_pairs` at identities 0.3, 0.4, 0.5 and 0.9:
   pairs aligned, time, pairs found, recall (summed over the subsets);
2. on all chains: the time of :func:`~data_pipeline.homology.homologous_pairs` and of
   :func:`~data_pipeline.homology.homology_keys` (which skips pairs already clustered),
   with the number of clusters and the largest one; rows with ``min_id 0`` use identity
   alone (homology rule 1, before MIN_IDENTICAL), for comparison;
3. with ``--chance N``, the chance links instead (no files read): N random chains of each
   length class (30-39, 40-59 and 60-99 residues) and 1,000 random chains of 100-400
   residues, all with natural amino-acid frequencies, so no pair is homologous. Every
   (class chain, long chain) pair is aligned: how many reach identity 0.3 of the shorter
   chain, how many of those also have ``MIN_IDENTICAL`` identical residues, the most
   identical residues seen; then :func:`~data_pipeline.homology.homology_keys` at 0.3
   (``min_residues`` 30) of the class chains plus the long ones, with identity alone and
   with the rule: the largest cluster (of unrelated chains: 1 when nothing links by
   chance). ``--chance 300`` takes about 15 minutes on one core;
4. with ``--workers N``, worker processes instead: :func:`~data_pipeline.homology.homology_keys`
   and :func:`~data_pipeline.homology.homologous_pairs` (at 0.3, ``min_residues``
   :data:`~data_pipeline.splits.HOMOLOGY_MIN_RESIDUES`, the build's setting) timed at
   ``workers=1`` and ``workers=N`` side by side, on all chains of ``--pdb`` and on
   ``--random`` chains (default 1,000: families of mutants of random ancestors, plus 6%
   chains of 30-39 residues, half of them mutants of others, for the exhaustive pairs),
   and :func:`~data_pipeline.homology.candidate_pairs` (the band test, quadratic) on 4
   times as many unrelated random chains; each result must equal its ``workers=1`` one
   (asserted). About 2 minutes at ``--workers 2`` on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_homology.py`` (about 3 minutes on 2 cores;
``--help``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import Bio  # noqa: E402
import numpy as np  # noqa: E402

from data_pipeline.homology import (  # noqa: E402
    MIN_IDENTICAL,
    candidate_pairs,
    homologous_pairs,
    homology_keys,
    identical_residues,
    make_aligner,
)
from data_pipeline.parse import try_read_structure  # noqa: E402
from data_pipeline.splits import HOMOLOGY_MIN_RESIDUES, MIN_LINK_RESIDUES, chain_sequences  # noqa: E402
from data_pipeline.structure import PointCloud  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.9)
#: UniProt amino-acid frequencies, in the order of ``AMINO``.
AMINO = "ARNDCQEGHILKMFPSTWYV"
FREQ = (8.25, 5.53, 4.06, 5.45, 1.37, 3.93, 6.75, 7.07, 2.27, 5.96, 9.66, 5.84, 2.42, 3.86, 4.70, 6.56, 5.34, 1.08,
        2.92, 6.87)  # fmt: skip
CLASSES = ((30, 40), (40, 60), (60, 100))
NATURAL = np.array(FREQ) / sum(FREQ)


def natural_chain(rng: np.random.Generator, length: int) -> str:
    """A random chain of ``length`` residues with natural amino-acid frequencies."""
    return "".join(rng.choice(list(AMINO), length, p=NATURAL))


def print_header(head: str) -> None:
    print(head)
    print("-" * len(head))


def chance_links(n_class: int, n_long: int = 1000, seed: int = 0) -> None:
    """Part 3 of the module docstring: chance links between random unrelated chains."""
    rng = np.random.default_rng(seed)

    def random_chain(lo: int, hi: int) -> str:
        return natural_chain(rng, int(rng.integers(lo, hi)))

    long_ = [random_chain(100, 401) for _ in range(n_long)]
    aligner = make_aligner()
    print(f"chance links: {n_class} random chains per class x {n_long} random chains of 100-400 residues "
          f"(natural amino-acid frequencies, seed {seed}); identity 0.3, min_residues 30")  # fmt: skip
    head = (f"{'class':>7} | {'pairs':>7} {'identity>=0.3':>15} {f'and >={MIN_IDENTICAL} same':>15} {'most same':>9} | "
            f"{'largest cluster: identity alone':>31} {'rule':>5} | {'time s':>6}")  # fmt: skip
    print_header(head)
    for lo, hi in CLASSES:
        t0 = time.perf_counter()
        chains = [random_chain(lo, hi) for _ in range(n_class)]
        same = np.array([identical_residues(c, t, aligner) for c in chains for t in long_])
        shorter = np.repeat([len(c) for c in chains], n_long)
        by_identity = same / shorter >= 0.3 - 1e-12
        both = by_identity & (same >= MIN_IDENTICAL)
        largest = [max(Counter(homology_keys(chains + long_, 0.3, min_residues=30, min_identical=m)).values())
                   for m in (0, MIN_IDENTICAL)]  # fmt: skip
        n, dt = len(same), time.perf_counter() - t0
        print(f"{f'{lo}-{hi - 1}':>7} | {n:>7,} {_rate(by_identity.sum(), n):>15} {_rate(both.sum(), n):>15} "
              f"{same.max(initial=0):>9} | {largest[0]:>31,} {largest[1]:>5,} | {dt:>6.0f}")  # fmt: skip


def random_families(n: int, seed: int = 0, family: int = 10, short: float = 0.06) -> list[str]:
    """``n`` random chains (natural amino-acid frequencies): ancestors of 100-400 residues
    with ``family - 1`` mutants each (10-60% of positions re-drawn), then a ``short``
    fraction of 30-39-residue chains, half of them mutants (25% re-drawn) of the others."""
    rng = np.random.default_rng(seed)

    def chain(length: int) -> str:
        return natural_chain(rng, length)

    def mutant(seq: str, fraction: float) -> str:
        out = list(seq)
        for at in rng.choice(len(seq), round(fraction * len(seq)), replace=False):
            out[at] = rng.choice(list(AMINO), p=NATURAL)
        return "".join(out)

    n_short = round(short * n)
    ancestors = [chain(int(rng.integers(100, 401))) for _ in range(-(-(n - n_short) // family))]
    long_ = [a if m == 0 else mutant(a, rng.uniform(0.1, 0.6)) for a in ancestors for m in range(family)]
    shorts = [chain(int(rng.integers(30, 40))) for _ in range(n_short - n_short // 2)]
    return long_[: n - n_short] + shorts + [mutant(s, 0.25) for s in shorts[: n_short // 2]]


def workers_table(pdb_chains: list[str], n_random: int, workers: int) -> None:
    """Part 4 of the module docstring: workers=1 against workers=N on the same chains."""
    mr = HOMOLOGY_MIN_RESIDUES
    print(f"workers: 1 against {workers} (this machine: {os.cpu_count()} CPUs); identity 0.3, min_residues {mr}; "
          f"each workers={workers} result equals the workers=1 one (asserted)")  # fmt: skip
    head = (f"{'data':<17} {'chains':>7} {'distinct':>8} {'function':<17} | {'workers=1 s':>11} "
            f"{f'workers={workers} s':>11} {'ratio':>6} | result")  # fmt: skip
    print_header(head)
    unrelated = random_families(4 * n_random, seed=1, family=1, short=0)
    runs = [("--pdb", pdb_chains, (homology_keys, homologous_pairs)),
            ("random families", random_families(n_random), (homology_keys, homologous_pairs)),
            ("random unrelated", unrelated, (candidate_pairs,))]  # fmt: skip
    for name, chains, functions in runs:
        for fn in functions:
            times, results = [], []
            for w in (1, workers):
                t0 = time.perf_counter()
                results.append(fn(chains, 0.3, min_residues=mr, workers=w))
                times.append(time.perf_counter() - t0)
            same = np.array_equal(results[0], results[1]) if fn is candidate_pairs else results[0] == results[1]
            assert same, f"{fn.__name__} differs at workers={workers}"
            r = results[0]
            result = f"{len(set(r) - {None}):,} clusters" if fn is homology_keys else f"{len(r):,} pairs"
            print(f"{name:<17} {len(chains):>7,} {len(set(chains)):>8,} {fn.__name__:<17} | {times[0]:>11.2f} "
                  f"{times[1]:>11.2f} {times[0] / times[1]:>6.2f} | {result}")  # fmt: skip


def _rate(k: int, n: int) -> str:
    return f"{k:,} ({k / n:.3%})"


def load_chains(root: Path, limit: int | None) -> tuple[list[str], int]:
    """(one sequence per protein chain, files read) of the structure files under ``root``."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in (".tsv", ".md"))[:limit]
    chains = []
    for f in files:
        cloud = try_read_structure(f, selection="ca")
        if not isinstance(cloud, PointCloud):
            continue
        chains += chain_sequences(cloud).values()
    return chains, len(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_pdb = os.environ.get("PROTEIN_CARE_TEST_PDB", str(REPO.parent / "shared" / "pdb"))
    ap.add_argument("--pdb", default=default_pdb, help="folder of structure files (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="read only the first N files")
    ap.add_argument("--subset", type=int, default=150, help="distinct sequences for brute force (default 150)")
    ap.add_argument("--seeds", default="0,1,2", help="one subset per seed (default 0,1,2)")
    ap.add_argument("--min-residues", type=int, default=MIN_LINK_RESIDUES, help="default: %(default)s")
    ap.add_argument("--chance", type=int, default=0, metavar="N",
                    help="measure chance links of N random chains per length class instead (part 3)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=0, metavar="N",
                    help="time workers=1 against workers=N instead (part 4)")  # fmt: skip
    ap.add_argument("--random", type=int, default=1000, metavar="M",
                    help="random chains of part 4 (default %(default)s)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.chance > 0:
        chance_links(args.chance)
        return 0
    if args.workers < 0 or args.workers == 1:
        ap.error("--workers must be 2 or more (0: parts 1 and 2)")

    t0 = time.perf_counter()
    chains, n_files = load_chains(Path(args.pdb), args.limit)
    t_parse = time.perf_counter() - t0
    if len(chains) < 2:
        print(f"fewer than 2 protein chains under {args.pdb}", file=sys.stderr)
        return 2
    mr = args.min_residues
    linkable = sorted({s for s in chains if len(s) - s.count("X") >= mr})
    print(f"chains: {len(chains)} protein chains, {len(set(chains))} distinct sequences "
          f"({len(linkable)} with >= {mr} known residues) from {n_files} files in {args.pdb} "
          f"(read in {t_parse:.1f} s)")  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}, "
          f"biopython {Bio.__version__}")  # fmt: skip
    if args.workers:
        workers_table(chains, args.random, args.workers)
        return 0

    # 1. subsets: brute force vs prefilter
    seeds = [int(x) for x in args.seeds.split(",")]
    aligner = make_aligner()
    rows = {th: Counter() for th in THRESHOLDS}
    per_seed = []
    for seed in seeds:
        subset = sorted(random.Random(seed).sample(linkable, min(args.subset, len(linkable))))
        t0 = time.perf_counter()
        same = {
            p: identical_residues(subset[p[0]], subset[p[1]], aligner)
            for p in itertools.combinations(range(len(subset)), 2)
        }
        t_brute = time.perf_counter() - t0
        for th in THRESHOLDS:
            brute = {
                (i, j) for (i, j), v in same.items()
                if v >= MIN_IDENTICAL and v / min(len(subset[i]), len(subset[j])) >= th
            }  # fmt: skip
            t0 = time.perf_counter()
            found = set(homologous_pairs(subset, th, min_residues=mr))
            dt = time.perf_counter() - t0
            assert found <= brute, "the prefiltered search found a pair that brute force did not"
            aligned = len(candidate_pairs(subset, th, min_residues=mr))
            rows[th].update(b_aligned=len(same), b_time=t_brute, brute=len(brute), aligned=aligned, time=dt, found=len(found))
            if th == THRESHOLDS[0]:
                per_seed.append(f"{seed}: {len(found)}/{len(brute)}")
    print()
    print(f"{len(seeds)} random subsets of {args.subset} distinct sequences (seeds {args.seeds}), min_residues {mr}; "
          f"sums over the subsets")  # fmt: skip
    head = (f"{'identity':>8} | {'brute: aligned':>14} {'time s':>7} {'pairs':>6} | "
            f"{'prefilter: aligned':>18} {'time s':>7} {'found':>6} | {'recall':>6}")  # fmt: skip
    print_header(head)
    for th, r in rows.items():
        recall = r["found"] / r["brute"] if r["brute"] else float("nan")
        print(f"{th:>8.1f} | {r['b_aligned']:>14,} {r['b_time']:>7.1f} {r['brute']:>6,} | "
              f"{r['aligned']:>18,} {r['time']:>7.2f} {r['found']:>6,} | {recall:>6.3f}")  # fmt: skip
    print(f"found / brute-force pairs at {THRESHOLDS[0]} per seed: " + ", ".join(per_seed))

    # 2. all chains
    print()
    print(f"all chains: {len(chains)} ({len(set(chains))} distinct)")
    head = f"{'function':<17} {'identity':>8} {'min_res':>7} {'min_id':>6} {'aligned':>8} {'time s':>7} {'result':<40}"
    print_header(head)
    t0 = time.perf_counter()
    pairs = homologous_pairs(chains, 0.3, min_residues=mr)
    dt = time.perf_counter() - t0
    n_aligned = len(candidate_pairs(sorted(set(chains)), 0.3, min_residues=mr))
    print(f"{'homologous_pairs':<17} {0.3:>8.1f} {mr:>7} {MIN_IDENTICAL:>6} {n_aligned:>8,} {dt:>7.2f} "
          f"{len(pairs):,} chain pairs")  # fmt: skip
    mi = MIN_IDENTICAL
    settings = [(0.3, mr, mi), (0.3, 30, mi), (0.3, 30, 0), (0.4, mr, mi), (0.4, 30, mi), (0.4, 30, 0), (0.5, mr, mi),
                (0.9, mr, mi)]  # fmt: skip
    for th, min_res, min_id in dict.fromkeys(settings):
        t0 = time.perf_counter()
        keys = homology_keys(chains, th, min_residues=min_res, min_identical=min_id)
        dt = time.perf_counter() - t0
        sizes = Counter(k for k in keys if k is not None)
        result = f"{len(sizes):,} clusters, largest {max(sizes.values(), default=0):,} chains"
        print(f"{'homology_keys':<17} {th:>8.1f} {min_res:>7} {min_id:>6} {'-':>8} {dt:>7.2f} {result:<40}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

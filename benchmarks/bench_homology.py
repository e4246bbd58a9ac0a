"""Homology search (data_pipeline.homology): k-mer prefilter vs all-pairs alignment.

Reads the protein chains of every structure file under ``$PROTEIN_CARE_TEST_PDB``
(default ``<repo>/../shared/pdb``; about 2,000 chains, 1,360 distinct sequences) with
:func:`data_pipeline.parse.try_read_structure` (CA selection), one sequence per chain
(:func:`data_pipeline.splits.chain_sequences`). Then:

1. on random subsets of distinct sequences (``--subset`` of them, one per seed of
   ``--seeds``): brute force (every pair aligned) against
   :func:`~data_pipeline.homology.homologous_pairs` at identities 0.3, 0.4, 0.5 and 0.9:
   pairs aligned, time, pairs found, recall (summed over the subsets);
2. on all chains: the time of :func:`~data_pipeline.homology.homologous_pairs` and of
   :func:`~data_pipeline.homology.homology_keys` (which skips pairs already clustered),
   with the number of clusters and the largest one.

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

from data_pipeline.homology import (  # noqa: E402
    candidate_pairs,
    homologous_pairs,
    homology_keys,
    identity,
    make_aligner,
)
from data_pipeline.parse import try_read_structure  # noqa: E402
from data_pipeline.splits import MIN_LINK_RESIDUES, chain_sequences  # noqa: E402
from data_pipeline.structure import PointCloud  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.9)


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
    args = ap.parse_args(argv)

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

    # 1. subsets: brute force vs prefilter
    seeds = [int(x) for x in args.seeds.split(",")]
    aligner = make_aligner()
    rows = {th: Counter() for th in THRESHOLDS}
    per_seed = []
    for seed in seeds:
        subset = sorted(random.Random(seed).sample(linkable, min(args.subset, len(linkable))))
        t0 = time.perf_counter()
        ident = {p: identity(subset[p[0]], subset[p[1]], aligner) for p in itertools.combinations(range(len(subset)), 2)}
        t_brute = time.perf_counter() - t0
        for th in THRESHOLDS:
            brute = {p for p, v in ident.items() if v >= th}
            t0 = time.perf_counter()
            found = set(homologous_pairs(subset, th, min_residues=mr))
            dt = time.perf_counter() - t0
            assert found <= brute, "the prefiltered search found a pair that brute force did not"
            aligned = len(candidate_pairs(subset, th, min_residues=mr))
            rows[th].update(b_aligned=len(ident), b_time=t_brute, brute=len(brute), aligned=aligned, time=dt, found=len(found))
            if th == THRESHOLDS[0]:
                per_seed.append(f"{seed}: {len(found)}/{len(brute)}")
    print()
    print(f"{len(seeds)} random subsets of {args.subset} distinct sequences (seeds {args.seeds}), min_residues {mr}; "
          f"sums over the subsets")  # fmt: skip
    head = (f"{'identity':>8} | {'brute: aligned':>14} {'time s':>7} {'pairs':>6} | "
            f"{'prefilter: aligned':>18} {'time s':>7} {'found':>6} | {'recall':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for th, r in rows.items():
        recall = r["found"] / r["brute"] if r["brute"] else float("nan")
        print(f"{th:>8.1f} | {r['b_aligned']:>14,} {r['b_time']:>7.1f} {r['brute']:>6,} | "
              f"{r['aligned']:>18,} {r['time']:>7.2f} {r['found']:>6,} | {recall:>6.3f}")  # fmt: skip
    print(f"found / brute-force pairs at {THRESHOLDS[0]} per seed: " + ", ".join(per_seed))

    # 2. all chains
    print()
    print(f"all chains: {len(chains)} ({len(set(chains))} distinct)")
    head = f"{'function':<17} {'identity':>8} {'min_res':>7} {'aligned':>8} {'time s':>7} {'result':<40}"
    print(head)
    print("-" * len(head))
    t0 = time.perf_counter()
    pairs = homologous_pairs(chains, 0.3, min_residues=mr)
    dt = time.perf_counter() - t0
    n_aligned = len(candidate_pairs(sorted(set(chains)), 0.3, min_residues=mr))
    print(f"{'homologous_pairs':<17} {0.3:>8.1f} {mr:>7} {n_aligned:>8,} {dt:>7.2f} {len(pairs):,} chain pairs")
    for th, min_res in dict.fromkeys([(0.3, mr), (0.3, 30), (0.4, mr), (0.4, 30), (0.5, mr), (0.9, mr)]):
        t0 = time.perf_counter()
        keys = homology_keys(chains, th, min_residues=min_res)
        dt = time.perf_counter() - t0
        sizes = Counter(k for k in keys if k is not None)
        result = f"{len(sizes):,} clusters, largest {max(sizes.values(), default=0):,} chains"
        print(f"{'homology_keys':<17} {th:>8.1f} {min_res:>7} {'-':>8} {dt:>7.2f} {result:<40}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

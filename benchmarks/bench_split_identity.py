"""What homology links (``build_store(split_identity=...)``, rule d of
:mod:`data_pipeline.splits`) do to a store's splits and its build time.

Builds the demo's corpus (:func:`protein_care.demo.corpus_sources` of
``$PROTEIN_CARE_TEST_PDB``, default ``<repo>/../shared/pdb``; one CA cloud per file, 20 to
3,000 points, as ``make demo`` builds it; ``--per-chain``: one per protein chain) once per ``--identities`` value into a
temporary folder that is deleted afterwards, and prints a table: build time, clouds per
split, number of split components (clouds that must share a split), the largest one and
its share of the clouds. A component larger than a split's share keeps that split's
size far from its fraction: single linkage lets a multi-chain complex join the clusters
of all its chains.

Run: ``.venv/bin/python benchmarks/bench_split_identity.py`` (under a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.build import build_store  # noqa: E402
from protein_care.demo import corpus_sources  # noqa: E402


def _identity(text: str) -> float | None:
    return None if text.lower() in ("none", "off", "-") else float(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_pdb = os.environ.get("PROTEIN_CARE_TEST_PDB", str(REPO.parent / "shared" / "pdb"))
    ap.add_argument("--pdb", default=default_pdb, help="folder of structure files (default: %(default)s)")
    ap.add_argument("--identities", default="none,0.9,0.5,0.4,0.3",
                    help="split_identity values, 'none' for exact duplicates only (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parser processes")
    ap.add_argument("--per-chain", action="store_true", help="one cloud per protein chain, not per file")
    args = ap.parse_args(argv)
    identities = [_identity(x) for x in args.identities.split(",")]
    sources = corpus_sources(Path(args.pdb))
    unit = "chain" if args.per_chain else "file"
    print(f"corpus: the demo's {len(sources)} source folders under {args.pdb}, one cloud per {unit}; "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {args.workers} workers")
    header = f"{'identity':>8} | {'build s':>7} | {'train':>5} {'val':>5} {'test':>5} | {'components':>10} | largest"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-split-identity-") as tmp:
        for ident in identities:
            t0 = time.perf_counter()
            report = build_store(sources, Path(tmp) / f"store-{ident}", selection="ca", min_points=20,
                                 max_points=3000, workers=args.workers, progress=False, split_identity=ident,
                                 per_chain=args.per_chain)
            seconds = time.perf_counter() - t0
            c, s = report.components or {}, report.split_counts
            share = c.get("largest", 0) / max(1, report.clouds_written)
            print(f"{'none' if ident is None else ident:>8} | {seconds:7.1f} | {s['train']:5d} {s['val']:5d} "
                  f"{s['test']:5d} | {c.get('count', 0):10d} | {c.get('largest', 0)} clouds "
                  f"({share:.0%}, {c.get('largest_key')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

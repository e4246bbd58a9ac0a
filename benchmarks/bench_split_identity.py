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

Whether a giant component lands in a held-out split is a lottery of its key's hash, so
the last column redraws it ``--draws`` times (a salt prefixed to every component key)
and gives the largest val or test share seen: by the hash alone, and with the rule that
sends a component too large for its held-out split to train
(:func:`data_pipeline.splits.oversized_components`).

Run: ``.venv/bin/python benchmarks/bench_split_identity.py`` (about two minutes on 2 cores).
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
from data_pipeline.splits import assign_split, component_splits  # noqa: E402
from data_pipeline.store import PointCloudStore  # noqa: E402
from protein_care.demo import corpus_sources  # noqa: E402

FRACTIONS = (0.8, 0.1, 0.1)  # build_store's default


def worst_held_out(keys: list[str], draws: int) -> tuple[float, float]:
    """The largest val or test share over ``draws`` redrawn hashes of the component keys
    (one per cloud): by the hash alone, and with oversized components sent to train."""
    def held_out_share(splits: list[str]) -> float:
        return max(splits.count("val"), splits.count("test")) / len(splits)

    salted = [[f"{salt}:{k}" for k in keys] for salt in range(draws)]
    by_hash = max(held_out_share([assign_split(k, FRACTIONS) for k in draw]) for draw in salted)
    by_rule = max(held_out_share(component_splits(draw, fractions=FRACTIONS)[0]) for draw in salted)
    return by_hash, by_rule


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
    ap.add_argument("--draws", type=int, default=200, help="redrawn hashes for the worst held-out share")
    args = ap.parse_args(argv)
    identities = [_identity(x) for x in args.identities.split(",")]
    sources = corpus_sources(Path(args.pdb))
    unit = "chain" if args.per_chain else "file"
    print(f"corpus: the demo's {len(sources)} source folders under {args.pdb}, one cloud per {unit}; "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {args.workers} workers")
    header = (f"{'identity':>8} | {'build s':>7} | {'train':>5} {'val':>5} {'test':>5} | {'components':>10} | "
              f"{'largest':<24} | worst val/test share: hash, rule")
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
            keys = [e["split_key"] for e in PointCloudStore(report.out).entries]
            by_hash, by_rule = worst_held_out(keys, args.draws)
            largest = f"{c.get('largest', 0)} clouds ({share:.0%}, {c.get('largest_key')})"
            print(f"{'none' if ident is None else ident:>8} | {seconds:7.1f} | {s['train']:5d} {s['val']:5d} "
                  f"{s['test']:5d} | {c.get('count', 0):10d} | {largest:<24} | {by_hash:.0%}, {by_rule:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

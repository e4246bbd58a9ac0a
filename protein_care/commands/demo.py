"""``protein-care demo``: the end-to-end run on real PDB structures."""

from __future__ import annotations

import argparse
import math
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="build a store from real PDB files, train CARE/SimCLR/L_unif/L_inv, two CARE variants and the λ "
        "trade-off, evaluate and write a report",
        description="The end-to-end demo: builds a store from ../shared/pdb (or --pdb-dir, or fetches a fixed "
        "list of PDB IDs when online), trains the paper's CARE, SimCLR, L_unif and L_inv (Haar rotations in "
        "every view), two CARE variants (CARE points: λ = 30 with rotation-free invariance views; CARE split: "
        "the split embedding) and, unless --no-tradeoff, CARE points at λ = 3 and λ = 100 for the trade-off, "
        "all with the same seed, encoder and number of steps; evaluates each on the held-out split, and writes "
        "DIR/results.json and DIR/report.html.",
    )
    parser.add_argument("--out", required=True, help="output folder (store, runs, results.json, report.html)")
    parser.add_argument("--pdb-dir", default=None,
                        help="folder of structure files (default: $PROTEIN_CARE_TEST_PDB or ../shared/pdb)")
    parser.add_argument("--store", default=None,
                        help="an existing point-cloud store (from build-dataset) to use instead of building one "
                        "from --pdb-dir")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="wall-clock budget: on a machine too slow for the default steps, fewer steps are "
                        "trained (default: 10)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per run (default: 1,200, the length the demo's settings were "
                        "checked at, or fewer if they do not fit --minutes)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed shared by every run (default: 0)")
    parser.add_argument("--workers", type=int, default=None, help="parser processes for the store (default: CPU count)")
    parser.add_argument("--no-tradeoff", dest="tradeoff", action="store_false",
                        help="skip the λ trade-off runs (CARE points at λ = 3 and 100)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data_pipeline.build import EmptyBuild
    from protein_care.demo import StructuresUnavailable, run_demo

    if not (math.isfinite(args.minutes) and args.minutes > 0):
        print(f"error: --minutes {args.minutes}: expected a positive, finite number", file=sys.stderr)
        return 2
    if args.store and args.pdb_dir:
        print("error: --store and --pdb-dir: give one source, not both", file=sys.stderr)
        return 2
    if args.steps is not None and args.steps < 1:
        print(f"error: --steps {args.steps}: expected an integer >= 1", file=sys.stderr)
        return 2
    try:
        run_demo(args.out, pdb_dir=args.pdb_dir, store_dir=args.store, minutes=args.minutes, steps=args.steps, device=args.device,
                 seed=args.seed, workers=args.workers, tradeoff=args.tradeoff)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except EmptyBuild as error:  # no structure file could be parsed
        print(f"error: --pdb-dir: {error}", file=sys.stderr)
        return 2
    except StructuresUnavailable as error:  # no local folder and offline: nothing to train on
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0

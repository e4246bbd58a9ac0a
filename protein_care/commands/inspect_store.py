"""``protein-care inspect-store``: what a point-cloud store holds, and whether it is intact.

Opens a store built by ``build-dataset`` and prints its summary (the build's table:
clouds, points, splits, split components, failures by reason), how it was built
(selection, backend, filters, split rule) and the size of its clouds. Opening checks the
structure, file sizes and split codes; ``--verify`` also reads every file against the
sha256 recorded when it was written and checks every point's values, for a store copied
from another machine or kept on a disk you do not trust. ``--json`` prints the same
facts as one JSON object, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from protein_care.commands._args import add_progress_argument, arg_error

PROG = "protein-care inspect-store"

EXIT_OK = 0  # the store opened (and, with --verify, verified)
EXIT_DAMAGED = 1  # not a store, or a damaged one: the message names the file and problem
# EXIT_USAGE (2, protein_care.commands._args): a bad argument

EPILOG = f"""\
examples:
  {PROG} stores/ca
  {PROG} stores/ca --verify
  {PROG} stores/ca --json | jq .splits

exit status:
  {EXIT_OK}  the store opened (with --verify: every file matches its checksum)
  {EXIT_DAMAGED}  not a store, or a damaged one (the message says which file and why)
  2  bad arguments
"""

#: Configuration keys shown, in order, with their labels.
CONFIG_ROWS = (
    ("selection", "selection"),
    ("per_chain", "per chain"),
    ("backend", "backend"),
    ("backend_version", "backend version"),
    ("min_points", "min points"),
    ("max_points", "max points"),
    ("split_fractions", "split fractions"),
    ("split_rule", "split rule"),
    ("split_identity", "split identity"),
    ("homology_rule", "homology rule"),
    ("policy_version", "parse policy"),
    ("n_sources", "source files"),
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``inspect-store`` on the CLI's subparsers and return its parser."""
    p = subparsers.add_parser(
        "inspect-store",
        help="summarise a point-cloud store and check that it is intact",
        description="Print what a point-cloud store holds and how it was built; "
        "--verify reads every file against its recorded checksum.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE", help="a store folder written by build-dataset")
    p.add_argument("--verify", action="store_true",
                   help="read every file against its sha256 and check every point's values")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    add_progress_argument(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``inspect-store`` with parsed arguments; returns the exit status (see EPILOG)."""
    import numpy as np

    from data_pipeline.build_report import report_existing
    from data_pipeline.store import PointCloudStore, StoreError

    path = Path(args.store)
    if not path.exists():
        return arg_error(PROG, "STORE", f"not found: {args.store!r}")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        store = PointCloudStore(path, verify=args.verify, progress=progress)
        checksums = args.verify and "files" in store.meta
        checked = ("verified: every file matches its sha256" if checksums
                   else "values verified; no checksums recorded (a store written before they were)" if args.verify
                   else "opened; --verify reads every file")  # fmt: skip
        report = report_existing(store, str(store.meta.get("config_hash", "")), 0.0, status=checked)
    except (StoreError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_DAMAGED
    config = store.meta.get("config") or {}
    sizes = np.diff(store.offsets)
    if args.json:
        print(json.dumps({
            "store": str(path), "values_verified": bool(args.verify), "checksums_verified": checksums,
            "clouds": report.clouds_written,
            "points": report.n_points, "splits": report.split_counts,
            "split_components": report.components, "files_seen": report.files_seen,
            "left_out": len(report.failures), "left_out_by_reason": report.failures_by_reason(),
            "points_per_cloud": {"min": int(sizes.min()), "median": float(np.median(sizes)),
                                 "max": int(sizes.max())} if len(sizes) else None,
            "config": config, "config_hash": store.meta.get("config_hash"), "created": store.meta.get("created"),
        }, indent=2))  # fmt: skip
        return EXIT_OK
    print(report.summary(with_time=False))
    shown = [(label, config[key]) for key, label in CONFIG_ROWS if key in config]
    shown += [("points per cloud", f"min {sizes.min():,}, median {int(np.median(sizes)):,}, max {sizes.max():,}"
               if len(sizes) else "no clouds")]
    shown += [("created", store.meta.get("created", "unknown"))]
    width = max(len(label) for label, _ in shown)
    print("built with:")
    print("\n".join(f"  {label:<{width}}  {value}" for label, value in shown))
    return EXIT_OK

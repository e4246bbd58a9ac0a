"""``protein-care build-dataset``: parse structure files into a point-cloud store.

A thin layer over :func:`data_pipeline.build.build_store`: it gathers files (``--source``
folders or files, ``--manifest`` of fetch-pdb; a listed file that is gone is recorded in
failures.tsv as missing), checks the arguments, builds, and prints a summary table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_pipeline.atomic_files import RunIOError
from data_pipeline.build import EmptyBuild, StoreConfigMismatch, build_store
from data_pipeline.build_sources import find_structure_files, manifest_files
from data_pipeline.parse import BACKENDS
from data_pipeline.splits import check_fractions
from data_pipeline.store import StoreError
from data_pipeline.structure import SELECTIONS
from protein_care.commands._args import EXIT_USAGE, add_progress_argument, arg_error, at_least

PROG = "protein-care build-dataset"

EXIT_OK = 0  # the store was built (or was already up to date); failures are listed
EXIT_REFUSED = 1  # --out holds a store of another configuration (or not a store)
# EXIT_USAGE (2, protein_care.commands._args): a bad argument
EXIT_NO_CLOUDS = 3  # every file was left out: no store written, an existing one kept
EXIT_IO_ERROR = 4  # an I/O error (e.g. a full disk) stopped the build: an existing store kept

EPILOG = f"""\
examples:
  {PROG} --source /data/pdb --out stores/ca
  {PROG} --manifest cache/pdb/manifest.jsonl --out stores/ca --per-chain --min-points 30
  {PROG} --source a/ --source b/1abc.cif.gz --out stores/heavy --selection heavy --overwrite
  {PROG} --source /data/pdb --out stores/ca-h30 --split-identity 0.3

Splits keep together clouds of one entry or complex and clouds with the same residue
sequence; --split-identity also keeps together clouds whose protein chains are that
identical (homologues; see data_pipeline.splits, rule d). Its search grows with the
square of the number of distinct chains: seconds for thousands, hours for a whole PDB.

A folder is searched recursively for .cif/.mmcif/.pdb/.ent files (optionally .gz); each
file is then recognised by content. Files that give no cloud are listed, with the
reason, in STORE/failures.tsv (a manifest's file that is gone, as missing). Building
again with the same configuration does nothing once the store's checksums verify; a
damaged store is rebuilt. If no file gives a cloud, no store is written (an existing one
is kept) and the reasons go to STORE.failures.tsv beside it.

exit status:
  {EXIT_OK}  the store was built, or was already up to date
  {EXIT_REFUSED}  --out holds a store built with another configuration (use --overwrite), or is
     not a store (a folder with other files is never replaced, even with --overwrite)
  {EXIT_USAGE}  bad arguments
  {EXIT_NO_CLOUDS}  no file gave a cloud: nothing written (see STORE.failures.tsv)
  {EXIT_IO_ERROR}  an I/O error (e.g. a full disk) stopped the build: nothing written, an existing store kept
"""


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        return check_fractions([float(x) for x in text.split(",")])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected TRAIN,VAL,TEST summing to 1, got {text!r} ({exc})") from None


def _identity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], e.g. 0.3, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``build-dataset`` on the CLI's subparsers and return its parser."""
    p = subparsers.add_parser(
        "build-dataset",
        help="parse structure files into a memory-mapped point-cloud store",
        description="Parse PDB/mmCIF files (one policy, see data_pipeline.structure) into a "
        "packed point-cloud store with train/val/test splits, atomically.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = p.add_argument_group("inputs (combined)")
    inputs.add_argument("--source", action="append", default=[], metavar="DIR|FILE",
                        help="a folder (searched recursively) or a structure file; repeatable")
    inputs.add_argument("--manifest", action="append", default=[], metavar="FILE",
                        help="fetch-pdb manifest.jsonl: its ok/cached files; repeatable")
    p.add_argument("--out", required=True, metavar="STORE", help="store folder to create")
    what = p.add_argument_group("what to store")
    what.add_argument("--selection", choices=SELECTIONS, default="ca", help="atoms per cloud (default: ca)")
    what.add_argument("--min-points", type=at_least(1), default=1, metavar="N",
                      help="leave out clouds with fewer points (default: 1)")
    what.add_argument("--max-points", type=at_least(1), default=None, metavar="N",
                      help="leave out clouds with more points (default: no limit)")
    what.add_argument("--per-chain", action="store_true", help="one cloud per protein chain, not per file")
    what.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1), metavar="TRAIN,VAL,TEST",
                      help="split fractions (default: 0.8,0.1,0.1)")
    what.add_argument("--split-identity", type=_identity, default=None, metavar="FRACTION",
                      help="also keep clouds whose protein chains share at least this sequence "
                      "identity (e.g. 0.3) in one split; default: exact duplicates only")
    how = p.add_argument_group("how")
    how.add_argument("--backend", choices=BACKENDS, default="gemmi", help="parser (default: gemmi)")
    how.add_argument("--workers", type=at_least(1), default=None, metavar="N",
                     help="parser processes, and homology search processes with --split-identity (default: number of CPUs)")
    how.add_argument("--overwrite", action="store_true", help="replace a store of another configuration")
    add_progress_argument(how)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``build-dataset`` with parsed arguments; returns the exit status (see EPILOG)."""
    if not args.source and not args.manifest:
        return arg_error(PROG, "--source/--manifest", "give at least one input")
    if args.max_points is not None and args.max_points < args.min_points:
        return arg_error(PROG, "--max-points", f"must be >= --min-points ({args.min_points}), got {args.max_points}")
    paths: list[Path] = []
    for src in args.source:
        if not Path(src).exists():
            return arg_error(PROG, "--source", f"not found: {src!r}")
        found = find_structure_files([src])
        if not found:
            return arg_error(PROG, "--source", f"no structure files (.cif/.pdb/.ent[.gz]) under {src!r}")
        paths += found
    for manifest in args.manifest:
        try:
            paths += manifest_files(manifest)
        except OSError as exc:
            return arg_error(PROG, "--manifest", f"cannot read {manifest!r}: {exc.strerror or exc}")
    if not paths:
        return arg_error(PROG, "--manifest", "no usable (ok/cached) files in the manifest(s)")
    missing = [p for p in paths if not p.exists()]
    if missing and len(missing) == len(paths):
        return arg_error(PROG, "--manifest", f"none of the {len(missing)} listed files exist, e.g. {str(missing[0])!r}")
    if missing:  # recorded in failures.tsv by the build
        print(f"{PROG}: {len(missing)} listed files do not exist (e.g. {str(missing[0])!r}): "
              "left out as missing", file=sys.stderr)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return arg_error(PROG, "--out", f"exists and is not a folder: {args.out!r}")

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        report = build_store(
            paths, args.out, selection=args.selection, min_points=args.min_points,
            max_points=args.max_points, backend=args.backend, workers=args.workers,
            per_chain=args.per_chain, split_fractions=args.split, split_identity=args.split_identity,
            overwrite=args.overwrite,
            progress=progress, missing_ok=True,
        )  # fmt: skip
    except EmptyBuild as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_NO_CLOUDS
    except (StoreConfigMismatch, StoreError) as exc:
        print(f"{PROG}: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except RunIOError as exc:  # during the build: not a bad --out
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    except OSError as exc:  # set-up: --out (or the folder above it) cannot be created
        return arg_error(PROG, "--out", f"cannot write {args.out!r}: {exc.strerror or exc}")
    print(report.summary())
    if report.status == "up-to-date":
        print("store already built with this configuration: nothing to do")
    return EXIT_OK

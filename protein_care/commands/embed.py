"""``protein-care embed``: embed a store's clouds with a trained encoder, into one ``.npz``.

    protein-care embed RUN --out emb.npz [--store STORE] [--split all|train|val|test]
        [--checkpoint latest|step_K|init|PATH] [--overwrite] [--device auto] [--progress]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protein_care.commands._args import add_device_argument, add_progress_argument, output_file_problem

SPLITS = ("all", "train", "val", "test")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "embed",
        help="embed a store's clouds with a trained encoder (one .npz: embeddings, ids, splits, meta)",
        description="Embed every cloud of --split of STORE (default: the run's training store) with the frozen "
        "encoder of RUN, each in its stored pose, and write one .npz (numpy.load): embeddings (n, dim) float32, "
        "ids, splits, indices and meta (JSON: run, checkpoint, store, selection, encoder). To embed your own "
        "structure files, build a store of them first with protein-care build-dataset, with the atom selection "
        "the run was trained on.",
    )
    p.add_argument("run", metavar="RUN", help="a run folder written by protein-care train")
    p.add_argument("--out", required=True, help="the .npz file to write")
    p.add_argument("--store", default=None, help="store to embed (default: the run's training store)")
    p.add_argument("--split", default="all", choices=SPLITS, help="split of the store (default: all)")
    p.add_argument("--checkpoint", default=None,
                   help="latest (default), step_K (a snapshot), init (the initial weights) or a checkpoint path")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_device_argument(p)
    add_progress_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data_pipeline.store import StoreError
    from protein_care.devices import resolve_device
    from protein_care.embed_export import check_writable, embed_store, write_embeddings

    device = resolve_device(args.device)  # a bad --device exits 2 through cli.main
    problem = output_file_problem(args.out, "--out")
    if problem is None and Path(args.out).exists() and not args.overwrite:
        problem = f"--out {args.out}: the file exists (pass --overwrite to replace it)"
    if problem is None:
        try:  # before the work, not after it
            check_writable(args.out)
        except OSError as error:
            problem = f"--out {args.out}: cannot write there ({error.strerror or error})"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    checkpoint = int(args.checkpoint) if args.checkpoint is not None and args.checkpoint.isdigit() else args.checkpoint
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        result = embed_store(args.run, args.store, split=args.split, checkpoint=checkpoint, device=device,
                             progress=progress)
    except (FileNotFoundError, StoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    out = write_embeddings(result, args.out)
    n, dim = result["embeddings"].shape
    meta = result["meta"]
    print(f"wrote {out}: {n} clouds x {dim} dims ({meta['split']} of {meta['store']}, "
          f"{meta['encoder']} step {meta['checkpoint_step']})")
    return 0

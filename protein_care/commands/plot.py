"""``protein-care plot``: trajectories of proteins rotated 0 → 2π about x, y and z,
one panel per run, as a self-contained interactive HTML (CARE Fig. 2a).

    protein-care plot RUN [RUN ...] --out FILE.html [--store STORE] [--ids ID ...]
        [--steps 64] [--seed 0] [--view 2d|3d] [--png FILE.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protein_care.commands._args import add_device_argument, add_runs_arguments, at_least, output_file_problem


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="plot embedding trajectories of rotated proteins (self-contained HTML)",
        description="Rotate proteins from 0 to 2π about x, y and z, embed every step with each run's frozen "
        "encoder, project with a PCA fitted per run and write one interactive HTML (plotly.js embedded).",
    )
    add_runs_arguments(p, runs_help="run folders written by protein-care train", out_help="the HTML file to write",
                       store_help="store holding the proteins; needed when the runs were trained on different stores "
                       "(runs trained on another one are then marked)")
    p.add_argument("--ids", nargs="+", default=None, metavar="ID", help="cloud IDs to plot (default: drawn with --seed)")
    p.add_argument("--n-proteins", type=at_least(1), default=3,
                   help="proteins drawn when --ids is not given (default: 3; every cloud of a store holding fewer)")
    p.add_argument("--steps", type=int, default=64, help="angles per axis, 0 and 2π included (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the protein draw (default: 0)")
    p.add_argument("--view", default="2d", choices=("2d", "3d"), help="PCA to 2 or 3 components (default: 2d)")
    p.add_argument("--checkpoint", default=None, help="latest (default), step_K, init or a checkpoint path, for every run")
    p.add_argument("--png", default=None, help="also write a static PNG (needs the kaleido package)")
    add_device_argument(p)
    p.set_defaults(func=run)


def run_label(run) -> str:
    """``name (loss, step K)`` of a loaded run."""
    loss = run.config.get("loss")
    return f"{Path(run.dir).name} ({loss + ', ' if loss else ''}step {run.step})"


def proteins_to_draw(n_proteins: int, store) -> int:
    """``--n-proteins``, or every cloud of a store holding fewer (with a note on stderr)."""
    if len(store) == 0:
        raise ValueError(f"the store {getattr(store, 'path', '')} holds no clouds; nothing to draw")
    if len(store) < n_proteins:
        print(f"note: --n-proteins {n_proteins}: the store {getattr(store, 'path', '')} holds only {len(store)} "
              f"cloud(s); drawing {'it' if len(store) == 1 else 'all of them'} (choose proteins with --ids ID ...)",
              file=sys.stderr)
    return min(n_proteins, len(store))


def run(args: argparse.Namespace) -> int:
    from data_pipeline.store import StoreError
    from protein_care.devices import resolve_device
    from protein_care.evaluation.evaluate import open_store, training_store_path
    from protein_care.plotting import PngExportError, trajectory_figure, write_html, write_png
    from protein_care.provenance import run_store_mismatches
    from protein_care.runs import load_run
    from protein_care.trajectories import compute_trajectories, regularity_summary, sample_ids

    if args.steps < 2:
        print(f"error: --steps must be >= 2, got {args.steps}", file=sys.stderr)
        return 2
    for path, flag in ((args.out, "--out"), (args.png, "--png")):
        if problem := output_file_problem(path, flag):
            print(f"error: {problem}", file=sys.stderr)
            return 2
    try:
        device = resolve_device(args.device)
        checkpoint = int(args.checkpoint) if args.checkpoint and args.checkpoint.isdigit() else args.checkpoint
        runs = [load_run(r, device, checkpoint=checkpoint) for r in args.runs]
        store_path = args.store or training_store_path(runs[0].config)
        if not store_path:
            raise ValueError(f"{args.runs[0]}: the run's config names no store; pass --store")
        store = open_store(store_path)
        mismatches = run_store_mismatches([(r.dir, r.config) for r in runs], store, store_path,
                                          store_given=bool(args.store), what="to choose the proteins drawn",
                                          marked="its panel is marked")
        for mismatch in filter(None, mismatches):
            print(f"warning: RUN {mismatch.warning}", file=sys.stderr)
        ids = args.ids or sample_ids(store, proteins_to_draw(args.n_proteins, store), seed=args.seed)
        panels = []
        for r, mismatch in zip(runs, mismatches):
            traj = compute_trajectories(r.encoder, store, ids, steps=args.steps,
                                        length_scale=float(r.config["length_scale"]), device=device)
            panels.append((run_label(r) + (f" ⚠ {mismatch.note}" if mismatch else ""), traj))
    except (FileNotFoundError, StoreError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    fig = trajectory_figure(panels, view=args.view)
    out = write_html(fig, args.out)
    print(f"proteins: {', '.join(ids)}; {args.steps} steps per axis")
    print(f"{'run':40s}  {'closure':>8s}  {'speed CV':>8s}  {'planarity':>9s}  {'diameter':>8s}")
    for label, traj in panels:
        s = regularity_summary(traj)
        cells = [f"{v:.3f}" if v is not None else "–" for v in
                 (s["loop_closure_mean"], s["loop_speed_cv_mean"], s["loop_planarity_mean"], s["loop_diameter_mean"])]
        print(f"{label[:40]:40s}  {cells[0]:>8s}  {cells[1]:>8s}  {cells[2]:>9s}  {cells[3]:>8s}")
    print(f"wrote {out}")
    if args.png:
        try:
            print(f"wrote {write_png(fig, args.png)}")
        except PngExportError as error:
            print(f"error: --png: {error}", file=sys.stderr)
            return 1
    return 0

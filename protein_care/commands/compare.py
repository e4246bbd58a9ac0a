"""``protein-care compare``: the demo's report from existing runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protein_care.commands._args import add_device_argument, add_runs_arguments, output_folder_problem


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="evaluate existing runs and render the comparison report",
        description="Evaluate existing training runs on one store (held-out split, with snapshots across "
        "training) and write DIR/results.json and DIR/report.html, as `protein-care demo` does.",
    )
    add_runs_arguments(parser, runs_help="run folders (name them NAME=RUN to set the label)",
                       out_help="output folder for results.json and report.html", store_help="store to evaluate on")
    parser.add_argument("--ids", nargs="*", default=None, help="protein IDs for the trajectories (default: 3 sampled)")
    parser.add_argument("--steps", type=int, default=64, help="rotation steps per trajectory (default: 64)")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of every rotation and sample (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from data_pipeline.store import PointCloudStore
    from protein_care.claims import assess_claims, assess_stability
    from protein_care.demo import collect_run
    from protein_care.devices import resolve_device
    from protein_care.report import RESULTS_NAME, write_report
    from protein_care.runs import read_config, write_json_atomic
    from protein_care.trajectories import sample_ids

    if args.steps < 2:
        print(f"error: --steps {args.steps}: expected an integer >= 2 (0 and 2π are both drawn)", file=sys.stderr)
        return 2
    named = []
    for item in args.runs:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        run_dir = Path(path)
        try:
            config = read_config(run_dir)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: RUN {item}: {error}", file=sys.stderr)
            return 2
        named.append((name or run_dir.name, run_dir, config))
    store_path = args.store or named[0][2].get("store")
    if store_path is None:
        print(f"error: --store: not given, and {named[0][1]}'s config names no store", file=sys.stderr)
        return 2
    device = str(resolve_device(args.device))  # a bad --device exits 2 through cli.main
    try:
        store = PointCloudStore(store_path)
    except Exception as error:
        print(f"error: --store {store_path}: {error}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.ids or ()) - set(store.ids))
    if unknown:
        print(f"error: --ids: not in the store {store_path}: {', '.join(unknown[:5])}", file=sys.stderr)
        return 2
    if problem := output_folder_problem(args.out, "--out"):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        ids = args.ids or sample_ids(store, 3, seed=args.seed, split="test")
        runs = [collect_run(d, store, name=n, trajectory_ids=ids, out_dir=out, steps=args.steps, device=device,
                            seed=args.seed) for n, d, _ in named]
    except ValueError as error:  # a store too small to evaluate on, an unreadable checkpoint: named in the message
        print(f"error: {error}", file=sys.stderr)
        return 2
    baseline = next((r["baseline"] for r in runs if r.get("baseline")), None)
    results = {
        "schema": "protein-care/report/1", "title": "protein-care: comparison of runs",
        "meta": {"device": device, "store": str(store_path), "test clouds": len(store.split("test")), "seed": args.seed},
        "runs": runs, "baseline": baseline, "trajectory_ids": ids, "pc1_chance_deg": math.degrees(1.0),
        "retrieval_chance": runs[0]["metrics"].get("retrieval_chance"), "claims": assess_claims(runs, baseline),
        "stability": assess_stability(runs),
    }
    write_json_atomic(results, out / RESULTS_NAME)
    print(f"wrote {out / RESULTS_NAME} and {write_report(out)}")
    return 0

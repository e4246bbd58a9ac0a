"""``protein-care compare``: the demo's report from existing runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protein_care.commands._args import add_device_argument, add_runs_arguments, output_folder_problem

#: Proteins whose trajectories the report draws when --ids is not given.
N_TRAJECTORY_PROTEINS = 3


def add_parser(subparsers) -> None:
    from protein_care.claims import CLAIMS_NAMING

    parser = subparsers.add_parser(
        "compare",
        help="evaluate existing runs and render the comparison report",
        description="Evaluate existing training runs on one store (held-out split, with snapshots across "
        "training) and write DIR/results.json and DIR/report.html, as `protein-care demo` does. "
        f"Claims: {CLAIMS_NAMING}.",
    )
    add_runs_arguments(
        parser,
        runs_help="run folders; NAME=RUN sets the label (split at the first '='; an existing folder is taken whole "
        "even if its path holds '='). Default label: the folder's name. Labels (and their file names) must differ",
        out_help="output folder for results.json and report.html",
        store_help="store to evaluate every run on; needed when the runs were trained on different stores "
        "(runs trained on another one are then named in a warning and in the report's notes)")
    parser.add_argument("--ids", nargs="*", default=None, help="protein IDs for the trajectories (default: 3 sampled)")
    parser.add_argument("--steps", type=int, default=64, help="rotation steps per trajectory (default: 64)")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of every rotation and sample (default: 0)")
    parser.set_defaults(func=run)


def split_run_item(item: str) -> tuple[str, Path]:
    """``NAME=RUN`` as (NAME, RUN), split at the first ``=``; an item that is an existing
    folder, or holds no ``=``, is a run folder named after itself."""
    if "=" not in item or Path(item).is_dir():
        name, path = "", item
    else:
        name, _, path = item.partition("=")
    run_dir = Path(path)
    return name or run_dir.resolve().name or path, run_dir


def duplicate_problem(named: list[tuple[str, Path, dict]]) -> str | None:
    """Why two runs cannot share one report (the same label, or labels with the same
    file name: one's trajectories would overwrite the other's); None when all differ."""
    from protein_care.demo import slugify

    seen: dict[str, tuple[str, Path]] = {}
    for name, run_dir, _ in named:
        slug = slugify(name)
        if not slug:
            return f"RUN {name}={run_dir}: the label {name!r} holds no letter or digit; name the run with NAME=RUN"
        if slug in seen:
            other, other_dir = seen[slug]
            what = f"label {name!r}" if other == name else f"file name {slug!r} ({other!r} and {name!r})"
            parents = (slugify(other_dir.resolve().parent.name), slugify(run_dir.resolve().parent.name))
            first, second = ((f"{parents[0]}-{slug}", f"{parents[1]}-{slug}") if parents[0] != parents[1]
                             else (f"{slug}-1", f"{slug}-2"))
            return (f"RUN: two runs have the same {what}: {other_dir} and {run_dir} (their rows and trajectories "
                    f"would overwrite each other); name them with NAME=RUN, e.g. {first}={other_dir} {second}={run_dir}")
        seen[slug] = (name, run_dir)
    return None


def run(args: argparse.Namespace) -> int:
    import math

    from data_pipeline.store import PointCloudStore
    from protein_care.claims import assess_claims, assess_stability, claims_note
    from protein_care.demo import collect_run
    from protein_care.devices import resolve_device
    from protein_care.evaluation.evaluate import training_store_path
    from protein_care.provenance import run_store_mismatches
    from protein_care.report import RESULTS_NAME, write_report
    from protein_care.runs import read_config, write_json_atomic
    from protein_care.trajectories import sample_ids

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if args.steps < 2:
        return fail(f"--steps {args.steps}: expected an integer >= 2 (0 and 2π are both drawn)")
    named = []
    for item in args.runs:
        name, run_dir = split_run_item(item)
        try:
            config = read_config(run_dir)
        except (FileNotFoundError, ValueError) as error:
            return fail(f"RUN {item}: {error}")
        named.append((name, run_dir, config))
    if problem := duplicate_problem(named):
        return fail(problem)
    first_dir = named[0][1]
    store_path = args.store or training_store_path(named[0][2])  # the absolute path the trainer recorded
    if store_path is None:
        return fail(f"--store: not given, and {first_dir}'s config names no store")
    device = str(resolve_device(args.device))  # a bad --device exits 2 through cli.main
    try:
        store = PointCloudStore(store_path)
    except Exception as error:
        if args.store:
            return fail(f"--store {store_path}: {error}")
        return fail(f"{first_dir / 'config.json'} records the training store {store_path}, which cannot be opened "
                    f"({error}); pass --store STORE")
    try:
        found = run_store_mismatches([(d, c) for _, d, c in named], store, store_path, store_given=bool(args.store),
                                     what="to choose the store every run is evaluated on",
                                     marked="the report's notes name it")
    except ValueError as error:
        return fail(str(error))
    mismatches = {name: m for (name, _, _), m in zip(named, found) if m}
    for m in mismatches.values():
        print(f"warning: RUN {m.warning}", file=sys.stderr)
    unknown = sorted(set(args.ids or ()) - set(store.ids))
    if unknown:
        return fail(f"--ids: not in the store {store_path}: {', '.join(unknown[:5])}")
    if problem := output_folder_problem(args.out, "--out"):
        return fail(problem)
    notes = [f"{name} ({m.run_dir}): {m.note}" for name, m in mismatches.items()]
    if note := claims_note(name for name, _, _ in named):
        print(f"note: {note}", file=sys.stderr)
        notes.append(note)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        ids = args.ids or sample_ids(store, min(N_TRAJECTORY_PROTEINS, len(store)), seed=args.seed, split="test")
        runs = [collect_run(d, store, name=n, trajectory_ids=ids, out_dir=out, steps=args.steps, device=device,
                            seed=args.seed) for n, d, _ in named]
    except ValueError as error:  # a store too small to evaluate on, an unreadable checkpoint: named in the message
        return fail(str(error))
    baseline = next((r["baseline"] for r in runs if r.get("baseline")), None)
    results = {
        "schema": "protein-care/report/1", "title": "protein-care: comparison of runs",
        "meta": {"device": device, "store": str(Path(store.path).resolve()), "test clouds": len(store.split("test")),
                 "seed": args.seed},
        "runs": runs, "baseline": baseline, "trajectory_ids": ids, "pc1_chance_deg": math.degrees(1.0),
        "retrieval_chance": runs[0]["metrics"].get("retrieval_chance"), "claims": assess_claims(runs, baseline),
        "stability": assess_stability(runs), "notes": notes,
    }
    write_json_atomic(results, out / RESULTS_NAME)
    print(f"wrote {out / RESULTS_NAME} and {write_report(out)}")
    return 0

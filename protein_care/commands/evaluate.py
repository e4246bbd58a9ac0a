"""``protein-care evaluate``: PC1 probes, Wahba, γ_f, composition and retrieval of a
trained encoder, next to its random-init baseline, as one JSON.

    protein-care evaluate RUN [--store STORE] [--split test] [--out RUN/metrics.json]
        [--checkpoint latest|step_K|init|PATH] [--seed 0] [--n-rotations 20]
        [--n-compositions 10] [--probe-rotations 8] [--probe-clouds 256] [--max-clouds N]
        [--retrieval-draws 3] [--no-mlp] [--no-baseline] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protein_care.commands._args import add_device_argument, at_least, output_file_problem


_positive = at_least(1)


SPLITS = ("train", "val", "test", "all")
METRICS_NAME = "metrics.json"  # protein_care.evaluation.evaluate.METRICS_NAME (kept equal by a test)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained encoder: PC1 probe, Wahba, γ_f, composition, retrieval (JSON)",
        description="Embed rotated clouds with the frozen encoder of RUN and its random-init baseline, and "
        f"write one JSON of metrics (default RUN/{METRICS_NAME}) plus a table on stdout. The PC1 probes are "
        "fitted on the run's training store's train split.",
    )
    p.add_argument("run", metavar="RUN", help="a run folder written by protein-care train")
    p.add_argument("--store", default=None, help="store to evaluate on (default: the run's training store)")
    p.add_argument("--split", default="test", choices=SPLITS, help="split of --store (default: test)")
    p.add_argument("--out", default=None, help=f"the JSON to write (default: RUN/{METRICS_NAME})")
    p.add_argument("--checkpoint", default=None,
                   help="latest (default), step_K (a snapshot), init (the initial weights) or a checkpoint path")
    p.add_argument("--seed", type=int, default=0, help="seed of every rotation and subsample (default: 0)")
    p.add_argument("--n-rotations", type=_positive, default=20,
                   help="rotations shared by the set for Wahba, γ_f and composition (default: 20)")
    p.add_argument("--n-compositions", type=_positive, default=10,
                   help="rotation pairs (a, b) for the composition check ρ(b∘a) = ρ(b)ρ(a) (default: 10)")
    p.add_argument("--probe-rotations", type=_positive, default=8,
                   help="random rotations per probe-training cloud (default: 8)")
    p.add_argument("--probe-clouds", type=at_least(2), default=256,
                   help="at most this many training clouds fit the PC1 probes (default: 256)")
    p.add_argument("--max-clouds", type=at_least(2), default=None, help="evaluate at most this many clouds of the split")
    p.add_argument("--retrieval-draws", type=_positive, default=3, help="draws of two rotations per cloud (default: 3)")
    p.add_argument("--no-mlp", dest="mlp_probe", action="store_false", help="skip the MLP probe")
    p.add_argument("--no-baseline", dest="include_baseline", action="store_false",
                   help="skip the random-init baseline")
    p.add_argument("--batch-size", type=_positive, default=256, help="clouds per encoder call (default: 256)")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data_pipeline.store import StoreError
    from protein_care.devices import resolve_device
    from protein_care.evaluation.evaluate import METRICS_NAME, evaluate_run, format_table, write_metrics

    device = resolve_device(args.device)  # a bad --device exits 2 through cli.main
    problem = output_file_problem(args.out or str(Path(args.run) / METRICS_NAME), "--out")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    checkpoint = args.checkpoint
    if checkpoint is not None and checkpoint.isdigit():
        checkpoint = int(checkpoint)
    try:
        result = evaluate_run(
            args.run, args.store, split=args.split, seed=args.seed, n_rotations=args.n_rotations,
            checkpoint=checkpoint, device=device, include_baseline=args.include_baseline,
            probe_rotations=args.probe_rotations, probe_clouds=args.probe_clouds, max_clouds=args.max_clouds,
            retrieval_draws=args.retrieval_draws, n_compositions=args.n_compositions, mlp_probe=args.mlp_probe, batch_size=args.batch_size,
        )
    except (FileNotFoundError, StoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run) / METRICS_NAME
    write_metrics(result, out)
    print(format_table(result))
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {out} ({result['timings']['total_s']:.1f} s)")
    return 0

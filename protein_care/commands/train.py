"""``protein-care train``: train a point-cloud encoder with CARE or an ablation.

    protein-care train --store STORE --out RUN [--encoder deepset] [--loss care]
        [--epochs 20] [--batch-size 256] [--n-split 16] [--lam 0.01] [--temperature 0.5]
        [--lr 1e-3] [--seed 0] [--device auto] [--max-minutes M] [--max-steps S] [--resume]

The same command under ``torchrun --nproc-per-node K`` trains with DistributedDataParallel.
Every value (and the derived ones) goes to ``RUN/config.json``.
"""

from __future__ import annotations

import argparse
import sys

from protein_care.commands._args import add_device_argument
from protein_care.options import (
    DEFAULTS,
    EMBEDDINGS,
    ENCODERS,
    INV_AUGMENTS,
    LOSS_NAMES,
    NORM_STATS,
    NORMALIZATIONS,
    NORMS,
    POINT_FEATURES,
    POOLS,
    SPLIT_TRUNKS,
)


def _d(key: str) -> str:
    return f"(default: {DEFAULTS[key]})"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an encoder of protein point clouds with CARE (or SimCLR, L_inv, L_unif, L_equi+L_unif)",
        description="Train a set encoder on a point-cloud store. Writes RUN/config.json, RUN/checkpoint.pt "
        "(atomic; --resume continues from it), RUN/checkpoints/step_K.pt snapshots and RUN/metrics.jsonl.",
    )
    g = p.add_argument_group("data and run")
    g.add_argument("--store", required=True, help="a point-cloud store folder (made by protein-care build-dataset)")
    g.add_argument("--out", required=True, help="the run folder to write")
    g.add_argument("--split", default=DEFAULTS["split"], help=f"store split to train on, or 'all' {_d('split')}")
    g.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt (a fresh start when there is none)")
    g.add_argument("--seed", type=int, default=DEFAULTS["seed"], help=f"seed of initialisation, data order and augmentations {_d('seed')}")
    add_device_argument(g, DEFAULTS["device"])
    g.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this many minutes of this invocation")
    g.add_argument("--max-steps", type=int, default=None, help="plan at most this many optimizer steps (the schedule's length)")
    g.add_argument("--checkpoint-every", type=int, default=DEFAULTS["checkpoint_every"], help=f"steps between checkpoints {_d('checkpoint_every')}")
    g.add_argument("--log-every", type=int, default=DEFAULTS["log_every"], help=f"steps between metrics lines {_d('log_every')}")
    g.add_argument("--snapshots", type=int, default=DEFAULTS["snapshots"], help=f"weight snapshots at k/N of training {_d('snapshots')}")
    g.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    g.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    g = p.add_argument_group("objective")
    g.add_argument("--loss", default=DEFAULTS["loss"], choices=LOSS_NAMES, help=f"{_d('loss')}")
    g.add_argument("--lam", type=float, default=DEFAULTS["lam"], help=f"λ of the equivariance term {_d('lam')}")
    g.add_argument("--anti-invariance", type=float, default=DEFAULTS["anti_invariance"],
                   help="μ: add μ·mean cos(z(R1 x), z(R2 x)) over the two equivariance views (for --embedding split: "
                        f"block B), so that an invariant embedding no longer satisfies the loss for free; not in the paper {_d('anti_invariance')}")
    g.add_argument("--temperature", type=float, default=DEFAULTS["temperature"], help=f"InfoNCE τ {_d('temperature')}")
    g.add_argument("--n-split", type=int, default=DEFAULTS["n_split"], help=f"equivariance chunks per batch (must divide --batch-size) {_d('n_split')}")
    g.add_argument("--normalization", default=DEFAULTS["normalization"], choices=NORMALIZATIONS, help=f"of L_equi {_d('normalization')}")
    g.add_argument("--norm-stats", default=DEFAULTS["norm_stats"], choices=NORM_STATS,
                   help="BatchNorm statistics in training (--norm batch): joint over the stacked views of a step "
                   "(one forward pass), or per-view, as the release's four separate passes (the same results at "
                   f"the demo's settings: benchmarks/results/protein_settings.md) {_d('norm_stats')}")
    g.add_argument("--inv-augment", default=None, choices=INV_AUGMENTS,
                   help="what separates the two invariance views (default: rotation; points for block B of --embedding split); "
                        "posed-points: points in one random pose per cloud shared by both views")
    g.add_argument("--max-angle", type=float, default=DEFAULTS["max_angle"], help=f"degrees, for --inv-augment small-rotation {_d('max_angle')}")
    g.add_argument("--jitter", type=float, default=DEFAULTS["jitter"], help=f"Å per coordinate, for --inv-augment points/posed-points {_d('jitter')}")
    g.add_argument("--keep-fraction", type=float, default=DEFAULTS["keep_fraction"], help=f"points kept, for --inv-augment points/posed-points {_d('keep_fraction')}")
    g.add_argument("--train-points", type=int, default=DEFAULTS["train_points"],
                   help=f"at most N random points per cloud in each training step, shared by its views; "
                   f"0: all (evaluation always uses all) {_d('train_points')}")
    g.add_argument("--view-window", type=int, default=None,
                   help="make the views of W consecutive steps together (fewer kernel launches on a GPU; the draws "
                        "depend on W, so a resumed run must keep it); default: 1 on a CPU, up to 16 on CUDA")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help=f"{_d('epochs')}")
    g.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help=f"clouds per step and process {_d('batch_size')}")
    g.add_argument("--lr", type=float, default=DEFAULTS["lr"], help=f"AdamW peak learning rate {_d('lr')}")
    g.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"], help=f"{_d('weight_decay')}")
    g.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: 5%% of the planned steps)")
    g.add_argument("--min-lr-ratio", type=float, default=DEFAULTS["min_lr_ratio"], help=f"cosine floor as a fraction of --lr {_d('min_lr_ratio')}")

    g = p.add_argument_group("encoder")
    g.add_argument("--encoder", default=DEFAULTS["encoder"], choices=ENCODERS, help=f"{_d('encoder')}")
    g.add_argument("--embedding", default=DEFAULTS["embedding"], choices=EMBEDDINGS,
                   help="single, or split: [√(1-s)·invariant block; √s·CARE block], each block unit-norm, "
                   "s = --split-pose-weight (default: single)")
    g.add_argument("--split-trunks", default=DEFAULTS["split_trunks"], choices=SPLIT_TRUNKS,
                   help=f"--embedding split: one trunk per block, or one shared trunk {_d('split_trunks')}")
    g.add_argument("--split-pose-weight", type=float, default=DEFAULTS["split_pose_weight"],
                   help="--embedding split: share of the squared norm on the pose (CARE) block; cosines weigh the "
                   f"blocks (1-s, s) {_d('split_pose_weight')}")
    g.add_argument("--dim", type=int, default=DEFAULTS["dim"], help=f"embedding dimension {_d('dim')}")
    g.add_argument("--hidden", type=int, default=DEFAULTS["hidden"], help=f"width of φ and ρ {_d('hidden')}")
    g.add_argument("--phi-layers", type=int, default=DEFAULTS["phi_layers"], help=f"{_d('phi_layers')}")
    g.add_argument("--rho-layers", type=int, default=DEFAULTS["rho_layers"], help=f"{_d('rho_layers')}")
    g.add_argument("--pool", default=DEFAULTS["pool"], choices=POOLS, help=f"deepset pooling {_d('pool')}")
    g.add_argument("--norm", default=DEFAULTS["norm"], choices=NORMS,
                   help=f"normalisation of the pooled vectors (batch: BatchNorm1d across clouds) {_d('norm')}")
    g.add_argument("--point-features", default=DEFAULTS["point_features"], choices=POINT_FEATURES,
                   help=f"per-point input: coordinates, or with their quadratic monomials {_d('point_features')}")
    g.add_argument("--residue-features", dest="use_residue_features", action="store_true",
                   help="append a residue-type embedding to each point's input (default: off)")
    g.add_argument("--residue-embedding-dim", type=int, default=DEFAULTS["residue_embedding_dim"], help=f"{_d('residue_embedding_dim')}")
    g.add_argument("--heads", type=int, default=DEFAULTS["heads"], help=f"set-transformer attention heads {_d('heads')}")
    g.add_argument("--set-transformer-blocks", type=int, default=DEFAULTS["set_transformer_blocks"], help=f"{_d('set_transformer_blocks')}")
    g.add_argument("--length-scale", type=float, default=None,
                   help="global length scale in Å (default: mean radius of gyration of the training clouds)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> dict:
    """The run config: every known value from the parsed arguments."""
    return {key: getattr(args, key) for key in DEFAULTS if hasattr(args, key)}


def run(args: argparse.Namespace) -> int:
    from protein_care.training import train

    config = config_from_args(args)
    try:
        summary = train(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a store that cannot be opened names itself
        if type(error).__name__ == "StoreError":
            print(f"error: --store: {error}", file=sys.stderr)
            return 2
        raise
    state = "finished" if summary["completed"] else "stopped (resume with --resume)"
    print(f"{state} at step {summary['step']}/{summary['total_steps']}; run in {summary['run_dir']}")
    return 0

"""How much of an embedding is the pose, at each snapshot of a run: a diagnostic of
drift toward rotation invariance.

    uv run python benchmarks/pose_share.py RUN [RUN ...] --store STORE [--clouds 100] [--poses 48]

Each test cloud (the first ``--clouds`` of the store's test split) is embedded in
``--poses`` Haar-random poses (the same poses for every run and snapshot). Per block of
the embedding (a split run's invariant block A and pose block B, each unit-norm; a single
embedding is one block), at the initial weights, each snapshot and the final checkpoint:

- **pose share**: the share of the block's variance that lies between the poses of one
  cloud, Σ‖z − z̄_cloud‖² / Σ‖z − z̄‖². 0 is a rotation-invariant block; an untrained
  DeepSet is at about 0.4–0.5.
- **effective rank** of the centred block: exp of the entropy of its normalised
  squared singular values.
- **linear in R**: the share of the within-cloud variance that an affine function of the
  pose's nine matrix entries explains (least squares per cloud). 1 means the pose
  enters only through degree-1 (l = 1) components. With K poses a fit of 10 unknowns
  explains about 9/(K − 1) of anything by chance (0.19 at the default 48), so K must be
  well above 10.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_pipeline.store import PointCloudStore  # noqa: E402
from protein_care.embedding import embed_clouds  # noqa: E402
from protein_care.geometry import random_rotations  # noqa: E402
from protein_care.runs import list_snapshots, load_run, read_config  # noqa: E402


def blocks(run, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The unit-norm blocks of embeddings ``z`` (a split run: A and B, else the whole)."""
    s = getattr(run.encoder, "pose_weight", None)
    if s is None:
        return {"all": z}
    half = z.shape[1] // 2
    return {"A": z[:, :half] / math.sqrt(1 - s), "B": z[:, half:] / math.sqrt(s)}


def block_stats(z: torch.Tensor, poses: torch.Tensor) -> dict[str, float]:
    """``z`` (clouds, K, d) and ``poses`` (clouds, K, 3, 3): pose share, effective rank,
    linear-in-R share."""
    n, k, d = z.shape
    within = z - z.mean(1, keepdim=True)
    total = z - z.mean((0, 1), keepdim=True)
    share = float((within**2).sum() / (total**2).sum().clamp_min(1e-30))
    power = torch.linalg.svdvals(total.reshape(-1, d)) ** 2
    p = power / power.sum()
    rank = float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum()))
    design = torch.cat([torch.ones(n, k, 1, dtype=z.dtype), poses.reshape(n, k, 9).to(z.dtype)], dim=2)
    fit = torch.linalg.lstsq(design, within).solution  # (n, 10, d), one fit per cloud
    residual = float(((design @ fit - within) ** 2).sum())
    linear = 1.0 - residual / max(float((within**2).sum()), 1e-30)
    return {"pose_share": share, "effective_rank": rank, "linear_in_R": linear}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (protein-care train --out)")
    parser.add_argument("--store", required=True, type=Path, help="the point-cloud store the runs trained on")
    parser.add_argument("--clouds", type=int, default=100, help="test clouds to embed")
    parser.add_argument("--poses", type=int, default=48, help="random poses per cloud (>= 30: see linear in R)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.clouds < 2 or args.poses < 30:
        parser.error("--clouds must be >= 2 and --poses >= 30 (the linear fit has 10 unknowns per cloud)")
    for run_dir in args.runs:  # every run readable before any work
        try:
            read_config(run_dir)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
    store = PointCloudStore(args.store)
    test = [int(i) for i in store.split("test")][: args.clouds]
    coords = [store[i] for i in test for _ in range(args.poses)]
    poses = random_rotations(len(coords), generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64)
    print(f"{'run':<28} {'step':>6} {'block':>5} {'pose share':>10} {'eff. rank':>9} {'linear in R':>11}")
    for run_dir in args.runs:
        checkpoints = ["init", *[f"step_{step}" for step, _ in list_snapshots(run_dir)]]
        for checkpoint in checkpoints:
            run = load_run(run_dir, checkpoint=checkpoint)
            z = embed_clouds(run.encoder, coords, rotations=poses.float(), length_scale=float(run.config["length_scale"]))
            for name, block in blocks(run, z.double()).items():
                stats = block_stats(block.view(len(test), args.poses, -1), poses.view(len(test), args.poses, 3, 3))
                print(f"{str(run_dir)[-28:]:<28} {checkpoint.removeprefix('step_'):>6} {name:>5} "
                      f"{stats['pose_share']:>10.3f} {stats['effective_rank']:>9.1f} {stats['linear_in_R']:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

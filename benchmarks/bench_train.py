"""Training throughput of `protein-care train` and the share of the step spent on data.

    uv run python benchmarks/bench_train.py [--device auto] [--steps 5] [--synthetic]
        [--batch-sizes 64 256] [--store STORE] [--view-window W] [--write benchmarks/results/bench_train.md]

Builds a CA store from the BM5-clean structures in ../shared/pdb (or $PROTEIN_CARE_TEST_PDB;
synthetic clouds with ``--synthetic`` or when none are found) in a temporary folder,
or uses an existing store given with ``--store`` (e.g. on a machine without gemmi),
then times real trainer steps (CARE, default encoder) on the CPU and, when present, on
CUDA. Columns: device, batch B, the view window W (the trainer's default for the
device unless ``--view-window``: the views of W consecutive steps are made together,
:meth:`Trainer.make_window_views`), clouds/s (B / step time), step ms,
data ms (gather from the packed store + all augmentations, as the trainer builds them:
the median over whole windows of the window's mean per step, so each step is charged its
share of its window and a slow outlier window does not count), data share of the step (goal: < 10%), the
tensor ops the data path dispatches per step (on a GPU each costs ~10 µs of host time,
so for a small encoder the count is what matters), then, timed in the same run, the
data ms and share of one step at a time (W = 1, one stacked batch per step), the data ms
of the view-by-view reference (:mod:`protein_care.augment`'s per-view functions and
``concat_views``), and ms to collate the same batch with PyG's DataLoader over
StoreDataset.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from protein_care.augment import cap_points, concat_views, equivariance_views, invariance_views  # noqa: E402
from protein_care.training.data import epoch_batches  # noqa: E402
from protein_care.training.trainer import Trainer, step_generator  # noqa: E402
from _ops import count_ops  # noqa: E402


def build_store(folder: Path, synthetic: bool) -> Path:
    out = folder / "store"
    pdb = Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb")) / "BM5-clean"
    if not synthetic and pdb.is_dir():
        from data_pipeline.build import build_store as build

        build([str(pdb)], out, selection="ca", progress=False)
        return out
    from data_pipeline.store_writer import CloudRecord, write_store

    rng = np.random.default_rng(0)

    def clouds():
        for i in range(900):
            n = int(rng.integers(60, 600))
            pts = np.cumsum(rng.normal(size=(n, 3)) * 2.2, axis=0).astype(np.float32)  # a random walk, CA-like
            yield CloudRecord(f"synthetic{i}", pts, rng.integers(0, 21, n).astype(np.uint8), {"group": f"g{i}"})

    write_store(clouds(), out, {"synthetic": True})
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def view_by_view(trainer: Trainer, indices: torch.Tensor, step: int):
    """Reference data path: the same views made one at a time with the per-view
    functions of :mod:`protein_care.augment`, then concatenated."""
    cfg = trainer.config
    pos, x, batch = trainer.data.gather(indices, features=cfg["use_residue_features"])
    b = indices.numel()
    g = step_generator(trainer.device, cfg["seed"], 0, step)
    if cfg["train_points"]:
        pos, x, batch = cap_points(pos, x, batch, b, cfg["train_points"], g)
    common = dict(length_scale=cfg["length_scale"], generator=g, max_angle=cfg["max_angle"], jitter=cfg["jitter"],
                  keep_fraction=cfg["keep_fraction"])
    views = []
    if trainer.split:
        views += invariance_views(pos, x, batch, b, mode="rotation", **common)
    views += invariance_views(pos, x, batch, b, mode=cfg["inv_augment"], **common)
    if trainer.variant.needs_equivariance_views:
        views += equivariance_views(pos, x, batch, b, n_split=cfg["n_split"], length_scale=cfg["length_scale"], generator=g)
    return concat_views(views)


def time_steps(trainer: Trainer, batches: torch.Tensor, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per step: seconds of data (gather + augment, stacked), of the whole step, and of
    the view-by-view reference data path (timed in turn with the stacked one)."""
    device = trainer.device
    times = {"data": [], "step": [], "reference": []}
    for k in range(warmup + steps):
        indices = batches[k % len(batches)]
        sync(device)
        t0 = time.perf_counter()
        views = trainer.make_views(indices, k)
        sync(device)
        t1 = time.perf_counter()
        trainer.optimize(views)
        sync(device)
        t2 = time.perf_counter()
        view_by_view(trainer, indices, k)
        sync(device)
        t3 = time.perf_counter()
        if k >= warmup:
            times["data"].append(t1 - t0)
            times["step"].append(t2 - t0)
            times["reference"].append(t3 - t2)
    return times


def time_trainer_steps(trainer: Trainer, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per step, as ``Trainer.run`` takes them (windows of ``view_window`` steps made when
    their first step comes): seconds of data and of the whole step. Warm-up and timed
    steps both cover whole windows (see :func:`per_window_median`)."""
    device, w = trainer.device, trainer.config["view_window"]
    warmup, steps = -(-warmup // w) * w, -(-steps // w) * w
    times = {"data": [], "step": []}
    for k in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        views = trainer.next_views()
        sync(device)
        t1 = time.perf_counter()
        trainer.train_one(views)
        sync(device)
        if k >= warmup:
            times["data"].append(t1 - t0)
            times["step"].append(time.perf_counter() - t0)
    return times


def per_window_median(times: list[float], w: int) -> float:
    """The median over consecutive windows of ``w`` steps of each window's mean step time
    (the first step of a window makes the views of all ``w``: a plain median would miss
    that, a plain mean counts outliers in full)."""
    return statistics.median(statistics.mean(times[i : i + w]) for i in range(0, len(times) - w + 1, w))


def pyg_collate_ms(store: Path, batch: torch.Tensor, repeats: int = 3) -> float:
    """Reference: collating the same clouds with PyG's DataLoader over StoreDataset."""
    try:
        from torch_geometric.loader import DataLoader

        from protein_care.data import StoreDataset
    except ImportError:
        return float("nan")
    dataset = StoreDataset(str(store), None)
    subset = dataset.index_select(batch.tolist())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        next(iter(DataLoader(subset, batch_size=len(subset), shuffle=False)))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def print_profile(trainer: Trainer, batches: torch.Tensor, title: str, steps: int = 10, top: int = 12) -> None:
    """torch.profiler's table of the data path (``make_views``) over ``steps`` steps:
    the ops with the most host time and, on a GPU, the kernels with the most device time."""
    from torch.profiler import ProfilerActivity, profile

    device = trainer.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        for k in range(steps):
            trainer.make_views(batches[k % len(batches)], k)
        sync(device)
    events = prof.key_averages()
    print(f"\n# data path profile: {title}, {steps} steps")
    print(events.table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=48))
    if device.type == "cuda":
        print(events.table(sort_by="self_cuda_time_total", row_limit=top, max_name_column_width=48))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto: the CPU, and CUDA too when available; or cpu / cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (CUDA: ×10)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic clouds instead of BM5-clean")
    parser.add_argument("--store", type=Path, default=None, help="time on this existing store instead of building one")
    parser.add_argument("--write", type=Path, default=None, help="also write the table (Markdown) to this file")
    parser.add_argument("--view-window", type=int, default=None,
                        help="steps whose views are made together (default: the trainer's, 1 on a CPU, up to 16 on CUDA)")
    parser.add_argument("--profile", action="store_true",
                        help="also print torch.profiler's top ops (host and device time) of the data path per batch size")
    args = parser.parse_args(argv)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.device != "auto":
        devices = [torch.device(args.device)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store if args.store else build_store(Path(tmp), args.synthetic)
        from data_pipeline.store import PointCloudStore

        s = PointCloudStore(store)
        mean_points = float(np.diff(s.offsets).mean())
        for device in devices:
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
            for b in args.batch_sizes:
                config = {"out": str(Path(tmp) / "run"), "split": "all", "batch_size": b, "n_split": 16 if b >= 128 else 4,
                          "device": str(device), "progress": False, "view_window": args.view_window,
                          "epochs": 10_000}  # planned steps beyond the timed ones
                trainer = Trainer(config, store=s)
                w, first_window = trainer.config["view_window"], trainer.window_batches(0)
                batches = epoch_batches(len(s), b, seed=0, epoch=0)
                steps, warmup = args.steps * (10 if device.type == "cuda" else 1), 2 if device.type == "cpu" else 5
                one = time_steps(trainer, batches, steps, warmup)  # one step at a time, and view by view
                one_data_ms, one_step_ms, ref_ms = (statistics.median(one[key]) * 1e3 for key in ("data", "step", "reference"))
                windowed = time_trainer_steps(trainer, steps, warmup)
                data_ms, step_ms = (per_window_median(windowed[key], w) * 1e3 for key in ("data", "step"))
                ops = count_ops(functools.partial(trainer.make_window_views, first_window, 0)) / w
                if args.profile:
                    print_profile(trainer, batches, f"{name}, batch {b}")
                rows.append((name, b, w, b / (step_ms / 1e3), step_ms, data_ms, 100 * data_ms / step_ms, ops,
                             one_data_ms, 100 * one_data_ms / one_step_ms, ref_ms, pyg_collate_ms(store, batches[0])))
                del trainer
    header = (f"protein-care train throughput, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}; store: "
              f"{args.store or ('synthetic' if args.synthetic else 'BM5-clean CA')} ({len(s)} clouds, mean {mean_points:.0f} points); "
              "CARE, deepset (hidden 256, dim 128, xyz+quadratic), 4 views per cloud, one forward")
    lines = [header, "",
             "| device | batch | view window | clouds/s | step ms | data+augment ms | data share | data ops per step "
             "| one step at a time: data ms | share | view-by-view data ms | PyG DataLoader collate ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, b, w, cps, step_ms, data_ms, share, ops, one_ms, one_share, ref_ms, pyg_ms in rows:
        lines.append(f"| {name} | {b} | {w} | {cps:.0f} | {step_ms:.1f} | {data_ms:.2f} | {share:.1f}% | {ops:.1f} "
                     f"| {one_ms:.2f} | {one_share:.1f}% | {ref_ms:.2f} | {pyg_ms:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

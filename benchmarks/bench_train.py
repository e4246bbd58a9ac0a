"""Training throughput of `protein-care train` and the share of the step spent on data.

    uv run python benchmarks/bench_train.py [--device auto] [--steps 5] [--synthetic]
        [--batch-sizes 64 256] [--store STORE] [--write benchmarks/results/bench_train.md]

Builds a CA store from the BM5-clean structures in ../shared/pdb (or $PROTEIN_CARE_TEST_PDB;
synthetic clouds with ``--synthetic`` or when none are found) in a temporary folder,
or uses an existing store given with ``--store`` (e.g. on a machine without gemmi),
then times real trainer steps (CARE, default encoder) on the CPU and, when present, on
CUDA. Columns: device, batch B, clouds/s (B / step time), step ms, data ms (gather from
the packed store + all augmentations), data share of the step (goal: < 10%), and, for
reference, ms to collate the same batch with PyG's DataLoader over StoreDataset.
"""

from __future__ import annotations

import argparse
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

from protein_care.training.data import epoch_batches  # noqa: E402
from protein_care.training.trainer import Trainer  # noqa: E402


def build_store(folder: Path, synthetic: bool) -> Path:
    out = folder / "store"
    pdb = Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb")) / "BM5-clean"
    if not synthetic and pdb.is_dir():
        from data_pipeline.build import build_store as build

        build([str(pdb)], out, selection="ca", progress=False)
        return out
    from data_pipeline.store import CloudRecord, write_store

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


def time_steps(trainer: Trainer, batches: torch.Tensor, steps: int, warmup: int) -> tuple[list[float], list[float]]:
    """Per step: seconds of data (gather + augment) and of the whole step."""
    device = trainer.device
    data_s, step_s = [], []
    for k in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        views = trainer.make_views(batches[k % len(batches)], k)
        sync(device)
        t1 = time.perf_counter()
        trainer.optimize(views)
        sync(device)
        t2 = time.perf_counter()
        if k >= warmup:
            data_s.append(t1 - t0)
            step_s.append(t2 - t0)
    return data_s, step_s


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto: the CPU, and CUDA too when available; or cpu / cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (CUDA: ×10)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic clouds instead of BM5-clean")
    parser.add_argument("--store", type=Path, default=None, help="time on this existing store instead of building one")
    parser.add_argument("--write", type=Path, default=None, help="also write the table (Markdown) to this file")
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
                          "device": str(device), "progress": False}
                trainer = Trainer(config, store=s)
                batches = epoch_batches(len(s), b, seed=0, epoch=0)
                steps = args.steps * (10 if device.type == "cuda" else 1)
                data_s, step_s = time_steps(trainer, batches, steps, warmup=2 if device.type == "cpu" else 5)
                data_ms, step_ms = statistics.median(data_s) * 1e3, statistics.median(step_s) * 1e3
                rows.append((name, b, b / (step_ms / 1e3), step_ms, data_ms, 100 * data_ms / step_ms,
                             pyg_collate_ms(store, batches[0])))
                del trainer
    header = (f"protein-care train throughput, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}; store: "
              f"{args.store or ('synthetic' if args.synthetic else 'BM5-clean CA')} ({len(s)} clouds, mean {mean_points:.0f} points); "
              "CARE, deepset (hidden 256, dim 128, xyz+quadratic), 4 views per cloud, one forward")
    lines = [header, "",
             "| device | batch | clouds/s | step ms | data+augment ms | data share | PyG DataLoader collate ms |",
             "|---|---|---|---|---|---|---|"]
    for name, b, cps, step_ms, data_ms, share, pyg_ms in rows:
        lines.append(f"| {name} | {b} | {cps:.0f} | {step_ms:.1f} | {data_ms:.1f} | {share:.1f}% | {pyg_ms:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

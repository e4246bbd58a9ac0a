"""Training-step throughput of the vision benchmarks: batched on-device augmentation
(SimCLR, CARE) against a release-style pipeline (PIL transforms in DataLoader workers for
the invariance views, torchvision tensor transforms on the CPU with one parameter set per
chunk for the equivariance views, then a host→device copy), on synthetic CIFAR-sized data.

    uv run python benchmarks/bench_vision_step.py                 # H100: ResNet-18/50, batch 256/512
    uv run python benchmarks/bench_vision_step.py --toy --device cpu --threads 1   # CPU smoke run

A second table estimates the pretraining wall-clock of every Table 1 cell on the GPU it
runs on: epochs × ⌊training images / batch⌋ × the measured median step time of that
config's own training step (``method.step`` + backward + optimiser: its backbone,
batch, image size, SimCLR/MoCo, 2 or 4 views). With ``--toy`` on CPU the same table is
computed from toy-sized steps (width 8, batch 32, <= 32 px) and labelled CPU TOY: it
checks the arithmetic, it is not an H100 number.

Columns: pipeline, arch, batch, training images/s (each image makes 2 views, or 4 for
CARE), ms per step, ms of augmentation per step (batched: measured alone; release: time
the step waited for the loader plus the CPU equivariance views), its share of the step,
(batched) the tensor ops one ``step_views`` call dispatches (top-level ``aten::`` ops,
:func:`count_ops`; on a GPU each costs ~10 µs of host time), the network's achieved
TFLOP/s (the encoder's forward + backward FLOPs per step, counted once on the CPU, over
the step's wall time) and with ``--profile`` on CUDA the share of the step the GPU is busy
(near 100 %: bound by the GPU's arithmetic; well below: by the host's kernel launches).
Optional rows: ``care+compiled-aug`` (``--compile-augment``: ``run.compile_augment``),
``care-joint`` (``--joint-passes``: one forward pass over the four views,
``method.passes = "joint"``) and ``care+compiled`` (``--compile-model``: the encoder and
the augmentation compiled, ``run.compile``).
Designed for one H100 with bf16 autocast and channels_last; ``--toy`` uses ResNet-18 at
width 8, batch 32 and a few steps so that it finishes in well under a minute on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from protein_care.devices import resolve_device
from protein_care.losses import care_loss, info_nce
from vision_benchmarks.augment import AugmentConfig, BatchAugment
from vision_benchmarks.data import STATS
from vision_benchmarks.methods import SimCLR
from vision_benchmarks.models import build_encoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ops import count_flops, count_ops, device_busy_ms, sync  # noqa: E402
from _table1_estimates import (  # noqa: E402,F401  (TRAIN_IMAGES, TABLE1_METHODS, table1_configs: re-exported)
    TABLE1_METHODS, TRAIN_IMAGES, estimate_table, measure_config_step, table1_configs,
)

WARMUP = 5  # untimed steps before each row (cuDNN autotuning, clocks ramping up)
MEAN, STD = STATS["cifar10"]


def release_transform():
    """The release's per-image PIL pipeline (cifar10_train_transform), with torchvision's
    GaussianBlur standing in for its cv2 blur (same kernel and σ range)."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomResizedCrop(32), T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(3, (0.1, 2.0))], p=0.5), T.ToTensor(), T.Normalize(MEAN, STD),
    ])


def release_tensor_transform():
    """The release's equivariance-view transforms (dataset.get_transforms): torchvision
    tensor transforms, which draw one parameter set per call for a whole batch."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomResizedCrop(32), T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(3, (0.1, 2.0))], p=0.5), T.Normalize(MEAN, STD),
    ])


class PairDataset(Dataset):
    """Release ``CIFAR10Pair``: (ToTensor(img), view 1, view 2) per image."""

    def __init__(self, images):
        from PIL import Image

        self.images = [Image.fromarray(a) for a in images.permute(0, 2, 3, 1).numpy()]
        self.transform = release_transform()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from torchvision.transforms.functional import to_tensor

        img = self.images[i]
        return to_tensor(img), self.transform(img), self.transform(img)


def online_encoder(model, passes: str = "per-view", compile_model: bool = False) -> SimCLR:
    """The training step's view embedding (``SimCLR.embed_views``, as ``method.step``
    runs it): one pass per view or one joint pass, eager or ``torch.compile``d
    (``run.compile``)."""
    method = SimCLR(model, passes=passes)
    if compile_model:
        method.compile()
    return method


def _train_step(method, views, care, n_split, amp, device):
    """Embed the views (bf16 autocast), the loss, backward; synchronised."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        z = method.embed_views([v.contiguous(memory_format=torch.channels_last) for v in views])
        loss = care_loss(*z, temperature=0.5, lam=0.01, n_split=n_split)["loss"] if care else info_nce(*z, 0.5)
    method.zero_grad(set_to_none=True)
    loss.backward()
    sync(device)


def bench_batched(model, data, care, batch, steps, device, n_split, amp, *, compile_augment=False,
                  passes="per-view", compile_model=False, profile=False) -> dict:
    """Median step and augmentation ms, the ops one ``step_views`` call dispatches and
    (``profile``, CUDA) the GPU's busy ms per step."""
    aug = BatchAugment(AugmentConfig(mean=MEAN, std=STD))
    if compile_augment:
        aug.compile()
    method = online_encoder(model, passes, compile_model)
    g = torch.Generator(device=device).manual_seed(0)

    def step():
        idx = torch.randint(0, data.shape[0], (batch,), device=device, generator=g)
        sync(device)
        t0 = time.perf_counter()
        views = aug.step_views(data[idx], g, n_split=n_split if care else None)  # what a training step does
        sync(device)
        t1 = time.perf_counter()
        _train_step(method, views, care, n_split, amp, device)
        return t0, t1, time.perf_counter()

    step_ms, aug_ms = [], []
    for i in range(steps + WARMUP):
        t0, t1, t2 = step()
        if i >= WARMUP:
            step_ms.append((t2 - t0) * 1e3)
            aug_ms.append((t1 - t0) * 1e3)
    x = data[:batch]
    return {"step_ms": statistics.median(step_ms), "augment_ms": statistics.median(aug_ms),
            "augment_ops": count_ops(lambda: aug.step_views(x, g, n_split=n_split if care else None)),
            "busy_ms": device_busy_ms(step, device) if profile else None}


def bench_release(model, data, batch, steps, device, n_split, workers, amp) -> dict:
    """Median step ms and the median time the step waited for its views."""
    loader = DataLoader(PairDataset(data.cpu()), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    equiv = release_tensor_transform()
    method = online_encoder(model)
    step_ms, wait_ms = [], []
    it = iter(loader)
    for step in range(steps + WARMUP):
        t0 = time.perf_counter()
        try:
            img, v1, v2 = next(it)
        except StopIteration:
            it = iter(loader)
            img, v1, v2 = next(it)
        # equivariance views: one parameter set for every chunk (the release's vmap(randomness='same'))
        e1, e2 = equiv(img), equiv(img)
        t1 = time.perf_counter()
        views = [t.to(device, non_blocking=True) for t in (v1, v2, e1, e2)]
        _train_step(method, views, True, n_split, amp, device)
        if step >= WARMUP:
            step_ms.append((time.perf_counter() - t0) * 1e3)
            wait_ms.append((t1 - t0) * 1e3)
    return {"step_ms": statistics.median(step_ms), "augment_ms": statistics.median(wait_ms), "augment_ops": None,
            "busy_ms": None}


def network_gflop_per_image(arch: str, width: int) -> float:
    """GFLOP of one forward and backward pass of the encoder per 32-px image (the same on
    any device; counted on the CPU on two images)."""
    model = build_encoder(arch, width=width)
    x = torch.rand(2, 3, 32, 32)
    return count_flops(lambda: model.embed(x).sum().backward()) / 2 / 1e9


def pipeline_table(args, device, amp: bool, name: str) -> list[dict]:
    """Batched on-device augmentation against the release-style loader (the first table),
    with the optional rows of ``--compile-augment``, ``--joint-passes``, ``--compile-model``."""
    if args.toy:
        archs, batches, width, steps, workers, n_images = ["resnet18"], [32], 8, min(args.steps, 3), 0, 256
    else:
        archs, batches, width, steps, workers, n_images = args.archs, args.batches, 64, args.steps, args.workers, 8192
    print(f"device: {name}; torch {torch.__version__}; median of {steps} steps; bf16 autocast: {amp}")
    data = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    header = (f"{'pipeline':<17} {'arch':<9} {'batch':>5} {'img/s':>8} {'step ms':>9} {'aug ms':>8} {'aug %':>6} "
              f"{'aug ops':>7} {'TFLOP/s':>8} {'GPU busy':>8}")
    print(header + "\n" + "-" * len(header))
    rows = []
    for arch in archs:
        model = build_encoder(arch, width=width).to(device, memory_format=torch.channels_last)
        gflop_per_image = network_gflop_per_image(arch, width)
        for batch in batches:
            n_split = min(args.n_split, batch // 2)
            on_device = data.to(device)

            def batched(care, **options):
                return bench_batched(model, on_device, care, batch, steps, device, n_split, amp,
                                     profile=args.profile, **options)

            results = {"batched-simclr": batched(False), "batched-care": batched(True),
                       "release-care": bench_release(model, data, batch, steps, device, n_split, workers, amp)}
            if args.compile_augment:  # the same steps with the augmentation compiled (run.compile_augment)
                results["care+compiled-aug"] = batched(True, compile_augment=True)
            if args.joint_passes:  # one forward pass over the four views (method.passes = "joint")
                results["care-joint"] = batched(True, compile_augment=args.compile_augment, passes="joint")
            if args.compile_model:  # the encoder compiled as well (run.compile = true)
                results["care+compiled"] = batched(True, compile_augment=True, compile_model=True)
            for pipeline, r in results.items():
                views = 2 if pipeline == "batched-simclr" else 4
                gflop = gflop_per_image * views * batch
                row = {"pipeline": pipeline, "arch": arch, "batch": batch, "images_per_s": batch / r["step_ms"] * 1e3,
                       "step_ms": r["step_ms"], "augment_ms": r["augment_ms"],
                       "augment_share": r["augment_ms"] / r["step_ms"], "augment_ops": r["augment_ops"],
                       "network_gflop": gflop, "tflop_per_s": gflop / r["step_ms"], "gpu_busy_ms": r["busy_ms"],
                       "device": name}
                rows.append(row)
                ops = "-" if r["augment_ops"] is None else r["augment_ops"]
                busy = "-" if r["busy_ms"] is None else f"{100 * r['busy_ms'] / r['step_ms']:.0f}%"
                print(f"{pipeline:<17} {arch:<9} {batch:>5} {row['images_per_s']:>8.0f} {r['step_ms']:>9.1f} "
                      f"{r['augment_ms']:>8.1f} {100 * row['augment_share']:>5.1f}% {ops:>7} "
                      f"{row['tflop_per_s']:>8.2f} {busy:>8}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--toy", action="store_true", help="tiny sizes for a CPU smoke run")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--estimate-steps", type=int, default=None,
                        help="timed steps per Table 1 config (default: --steps)")
    parser.add_argument("--archs", nargs="+", default=["resnet18", "resnet50"], help="backbones of the first table")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 512], help="batch sizes of the first table")
    parser.add_argument("--compile-augment", action="store_true",
                        help="add a row with the augmentation compiled by torch.compile")
    parser.add_argument("--joint-passes", action="store_true",
                        help="add a row with one forward pass over the four views (method.passes = joint)")
    parser.add_argument("--compile-model", action="store_true",
                        help="add a row with the encoder and the augmentation compiled (run.compile = true)")
    parser.add_argument("--profile", action="store_true",
                        help="CUDA: the GPU's busy share of each batched step (torch.profiler), in 'GPU busy'")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the release pipeline")
    parser.add_argument("--n-split", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-pipelines", action="store_true", help="skip the batched-vs-release table")
    parser.add_argument("--no-estimates", action="store_true", help="skip the Table 1 wall-clock estimates")
    parser.add_argument("--only", help="estimate only the configs whose name contains this, e.g. cifar10_")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    out = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "device": name,
           "pipelines": [] if args.no_pipelines else pipeline_table(args, device, amp, name)}
    if not args.no_estimates:
        if device.type != "cuda" and not args.toy:
            print("\nTable 1 estimates need a GPU (full-size ResNet-50 steps); on CPU pass --toy for the toy table.")
        else:
            steps = args.estimate_steps or args.steps
            out["estimates"] = estimate_table(device, min(steps, 3) if args.toy else steps, args.toy,
                                              name, args.only)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

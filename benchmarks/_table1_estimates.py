"""The Table 1 wall-clock estimates of ``bench_vision_step.py``: epochs × ⌊training
images / batch⌋ × the measured median step time of each cell's own training step
(``method.step`` + backward + optimiser), on synthetic uint8 images of the size that step
receives. ``toy`` shrinks every config (width 8, batch 32, <= 32 px) for a CPU check of
the arithmetic; those numbers are not H100 estimates."""

from __future__ import annotations

import json
import statistics
import time

import torch

from _ops import sync
from vision_benchmarks.data import STATS

MEAN, STD = STATS["cifar10"]


#: Pretraining images per epoch (STL10: train + unlabeled; ImageNet100: the CMC classes' train split).
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000, "imagenet100": 126_689}
STORED_SIZE = {"cifar10": 32, "cifar100": 32, "stl10": 96}  # imagenet100: decoded batches (step_input)
TABLE1_METHODS = ("simclr", "moco", "care", "care-moco")
TOY = ["model.width=8", "optim.batch_size=32", "method.equiv_batch_size=0", "moco.queue_size=256",
       "moco.key_bn_splits=2", "run.channels_last=false", "run.device=cpu"]


def table1_configs(toy: bool) -> list[tuple[str, dict]]:
    """The resolved config of every Table 1 cell; ``toy`` shrinks the network and the
    batch (width 8, batch 32, chunks of 8, images at most 32 px) for a CPU run."""
    from vision_benchmarks.config import load_config

    out = []
    for dataset in TRAIN_IMAGES:
        for method in TABLE1_METHODS:
            name = f"{dataset}_{method}"
            cfg = load_config(name)
            if toy:
                size = min(32, cfg["augment"]["size"])
                cfg = load_config(name, [*TOY, "method.n_split=4", f"augment.size={size}", f"data.store_size={size}"])
            out.append((name, cfg))
    return out


def step_input(cfg: dict, images: torch.Tensor, device, generator):
    """What one training step of ``cfg`` consumes: a random uint8 batch of the cached
    images (CIFAR/STL), or for ImageNet100 a ``DecodedBatch`` as its loader's workers
    deliver it (two 224-px crops per image, the equivariance images at ``augment.size``,
    or at ``data.store_size`` with ``augment.equiv_crop``)."""
    o, m, a = cfg["optim"], cfg["method"], cfg["augment"]
    b = o["batch_size"]
    if cfg["dataset"] != "imagenet100":
        return images[torch.randperm(images.shape[0], device=device, generator=generator)[:b]]
    from vision_benchmarks.imagenet import DecodedBatch

    def uint8(n, side):
        return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, device=device, generator=generator)

    e = (m["equiv_batch_size"] or b) if m["loss"] == "care" else 0
    equiv_side = cfg["data"]["store_size"] if a["equiv_crop"] else a["size"]
    return DecodedBatch((uint8(b, a["size"]), uint8(b, a["size"])), uint8(e, equiv_side),
                        torch.zeros(b, dtype=torch.int64, device=device))


def measure_config_step(cfg: dict, device, steps: int, warmup: int = 2) -> float:
    """Median seconds of one real training step (``method.step`` + backward + optimiser)
    of ``cfg`` on synthetic uint8 images of the size the step receives (JPEG decoding of
    ImageNet100 runs in loader workers beside the step and is not timed here)."""
    from vision_benchmarks.data import ImageData
    from vision_benchmarks.evaluate import make_optimizer
    from vision_benchmarks.train import build_all

    o, r = cfg["optim"], cfg["run"]
    size = STORED_SIZE.get(cfg["dataset"], cfg["augment"]["size"])
    n = 2 * o["batch_size"] if cfg["dataset"] != "imagenet100" else 8
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.zeros(n, dtype=torch.int64)
    data = ImageData(cfg["dataset"], images, labels, images, labels, images, labels, ["0"], MEAN, STD).to(device)
    method, augment = build_all(cfg, data, device)
    optimizer = make_optimizer(o["optimizer"], method.trainable_parameters(), lr=o["lr"],
                               weight_decay=o["weight_decay"], momentum=o["momentum"])
    amp = r["amp"] and device.type == "cuda"
    aug_gen = torch.Generator(device=device).manual_seed(1)
    times = []
    for step in range(warmup + steps):
        x = step_input(cfg, data.train, device, aug_gen)
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = method.step(x, augment, aug_gen, channels_last=r["channels_last"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def estimate_table(device, steps: int, toy: bool, device_name: str, only: str | None = None) -> list[dict]:
    """Print and return epochs × ⌊images/batch⌋ × measured step time per Table 1 cell
    (pretraining only: no kNN monitor, no linear probe). Cells whose measured step is
    the same (same network, input, batch, views and chunks) are timed once."""
    label = ("CPU TOY: width 8, batch 32, <= 32 px, on " + device_name + " -- NOT an H100 estimate"
             if toy else f"{device_name}: full Table 1 configs")
    print(f"\nEstimated pretraining wall-clock per Table 1 cell ({label}); median of {steps} steps")
    header = (f"{'config':<22} {'arch':<9} {'batch':>5} {'px':>4} {'views':>5} {'step ms':>9} "
              f"{'steps/ep':>8} {'epochs':>6} {'hours':>8}")
    print(header + "\n" + "-" * len(header))
    timed: dict[str, float] = {}
    rows = []
    for name, cfg in table1_configs(toy):
        if only and only not in name:
            continue
        m, o = cfg["method"], cfg["optim"]
        equiv = m["loss"] == "care"
        key = json.dumps([cfg["model"], cfg["augment"]["size"], STORED_SIZE.get(cfg["dataset"], cfg["data"]["store_size"]),
                          cfg["dataset"] == "imagenet100",
                          o["batch_size"], m["framework"], equiv and m["equiv_batch_size"], equiv and m["n_split"],
                          cfg["moco"]["key_bn_splits"], cfg["moco"]["queue_size"], o["optimizer"]])
        if key not in timed:
            try:
                timed[key] = measure_config_step(cfg, device, steps, warmup=1 if toy else 2)
            except torch.cuda.OutOfMemoryError:
                timed[key] = float("nan")
                torch.cuda.empty_cache()
        step_s = timed[key]
        steps_per_epoch = TRAIN_IMAGES[cfg["dataset"]] // o["batch_size"]
        hours = o["epochs"] * steps_per_epoch * step_s / 3600
        row = {"config": name, "arch": cfg["model"]["arch"], "width": cfg["model"]["width"],
               "batch": o["batch_size"], "image_size": cfg["augment"]["size"], "views": 4 if equiv else 2,
               "step_ms": 1e3 * step_s, "steps_per_epoch": steps_per_epoch, "epochs": o["epochs"],
               "estimate_hours": hours, "device": device_name, "toy": toy}
        rows.append(row)
        print(f"{name:<22} {row['arch']:<9} {row['batch']:>5} {row['image_size']:>4} {row['views']:>5} "
              f"{row['step_ms']:>9.1f} {steps_per_epoch:>8} {o['epochs']:>6} {hours:>8.2f}")
    total = sum(r["estimate_hours"] for r in rows)
    print(f"{'all ' + str(len(rows)) + ' cells':<22} {'':>54} {total:>8.2f}   (nan: out of memory)")
    return rows



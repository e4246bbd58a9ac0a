"""Pretraining: the whole data set on the device as uint8 (ImageNet100: JPEGs decoded and
cropped by DataLoader workers, :mod:`vision_benchmarks.imagenet`), batched augmentation.

``pretrain(cfg, run_dir)`` writes into ``run_dir``:

- ``config.json``   the resolved configuration;
- ``checkpoint.pt`` model, optimizer, epoch, RNG states (atomic; loaded with
  ``weights_only=True``); a second call with the same config resumes from it;
- ``metrics.jsonl`` loss parts every ``run.log_every`` steps and kNN accuracies;
- ``results.json``  config, ``knn_top1``, ``knn_top1_random_init`` (the same network
  before its first step), timings; later ``linear_probe_top1`` is added by the probe.

Per step: a random batch (no replacement within an epoch, last partial batch dropped as
the release), two invariance views, and for CARE two equivariance views, four forward
passes; bf16 autocast on CUDA when ``run.amp``; channels_last when ``run.channels_last``.
Learning rate per step from ``optim.schedule`` (release ``adjust_learning_rate``).

``run.snapshot_every = k`` (> 0) also keeps the encoder weights of epoch 0 (before the
first step), every k-th epoch and the last one in ``snapshots/epoch_XXXX.pt`` (the
γ_f-over-training curve of Fig. 5 is evaluated on them).

Under ``torchrun`` (``WORLD_SIZE`` > 1) the run is data-parallel, see
:mod:`vision_benchmarks.distributed`: rank 0 alone writes the run folder and runs the
kNN monitor; the checkpoint holds every rank's augmentation-generator state, and a run
resumes only with the world size it was started with.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from vision_benchmarks import distributed
from vision_benchmarks.augment import AugmentConfig, BatchAugment
from vision_benchmarks.config import differing_keys, fill_defaults
from data_pipeline.atomic_files import append_json_line, json_lines, write_text_atomic, write_torch_atomic
from vision_benchmarks.data import ImageData, load_dataset
from vision_benchmarks.evaluate import knn_top1, lr_factor, make_optimizer
from vision_benchmarks.methods import build_method
from vision_benchmarks.models import build_encoder
from vision_benchmarks.runs import check_run_folder

CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"
#: Keys that may change between a run and its resumption (they do not alter the result).
RESUME_FREE_KEYS = {
    ("run", "progress"), ("run", "device"), ("run", "threads"), ("run", "checkpoint_every"), ("run", "knn_every"),
    ("run", "log_every"), ("run", "snapshot_every"), ("data", "root"), ("data", "download"), ("data", "workers"),
    ("optim", "epochs"), ("run", "compile"), ("run", "compile_augment"),
}
#: How the device is chosen in a vision run, for error messages.
DEVICE_FLAG = "run.device={}"
#: Sections that only configure evaluation (never the weights).
RESUME_FREE_SECTIONS = {"measure"}


def method_label(cfg: dict) -> str:
    """Table 1 row key: simclr, moco, care (CARE on SimCLR), care-moco; else the loss name."""
    framework, loss = cfg["method"]["framework"], cfg["method"]["loss"]
    return {("simclr", "simclr"): "simclr", ("moco", "simclr"): "moco", ("simclr", "care"): "care",
            ("moco", "care"): "care-moco"}.get((framework, loss), loss)


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def augment_config(cfg: dict, data: ImageData) -> AugmentConfig:
    a = cfg["augment"]
    return AugmentConfig(
        size=a["size"], scale=tuple(a["scale"]), ratio=tuple(a["ratio"]), flip_p=a["flip_p"],
        jitter=tuple(a["jitter"]), jitter_p=a["jitter_p"], grayscale_p=a["grayscale_p"],
        blur_kernel=a["blur_kernel"], blur_sigma=tuple(a["blur_sigma"]), blur_p=a["blur_p"],
        mean=tuple(data.mean), std=tuple(data.std), blur_impl=a["blur_impl"], equiv_crop=a["equiv_crop"],
    )


def load_data(cfg: dict) -> ImageData:
    d = cfg["data"]
    data = load_dataset(d["name"], d["root"], d["download"], store_size=d["store_size"],
                        image_size=cfg["augment"]["size"], workers=d["workers"])
    return data.subset(d["train_subset"] or None, d["test_subset"] or None)


def build_all(cfg: dict, data: ImageData, device: torch.device, world_size: int = 1):
    """Encoder, method and augmentation of a run, on ``device`` (seeded by run.seed);
    with ``world_size`` > 1 the method gets one rank's share of the batch sizes
    (:func:`vision_benchmarks.distributed.local_sizes`)."""
    if world_size > 1:
        sizes = distributed.local_sizes(cfg, world_size)
        cfg = {**cfg, "method": {**cfg["method"], "n_split": sizes["n_split"],
                                 "equiv_batch_size": sizes["equiv_batch_size"]}}
    torch.manual_seed(cfg["run"]["seed"])
    m = cfg["model"]
    encoder = build_encoder(m["arch"], cifar_stem=m["cifar_stem"], width=m["width"],
                            hidden_dim=m["hidden_dim"], proj_dim=m["proj_dim"], head=m["head"])
    method = build_method(cfg, encoder).to(device)
    if cfg["run"]["channels_last"]:
        method = method.to(memory_format=torch.channels_last)
    augment = BatchAugment(augment_config(cfg, data), cfg["method"]["equiv_views"])
    if compiles_augment(cfg, device):
        augment.compile()
    return method, augment


def compiles_augment(cfg: dict, device: torch.device) -> bool:
    """``run.compile_augment`` on CUDA, where the augmentation's few hundred small kernels
    are launch-bound and fusing them halves its time; on a CPU compiling buys nothing
    for 32-px images and needs a C++ toolchain, so the pass stays eager."""
    return bool(cfg["run"]["compile_augment"]) and torch.device(device).type == "cuda"


def _train_loader(cfg: dict, data: ImageData, method, ctx: distributed.DistContext):
    """The ImageNet100 :class:`~vision_benchmarks.imagenet.TrainLoader` of this rank, or
    ``None`` when the training images are a tensor on the device."""
    from vision_benchmarks.imagenet import FolderImages, TrainLoader

    if not isinstance(data.train, FolderImages):
        return None
    a, sizes = cfg["augment"], distributed.local_sizes(cfg, ctx.world_size)
    n_equiv = (sizes["equiv_batch_size"] or sizes["batch_size"]) if method.variant.needs_equivariance_views else 0
    return TrainLoader(data.train, size=a["size"], scale=a["scale"], ratio=a["ratio"], n_equiv=n_equiv,
                       equiv_side=cfg["data"]["store_size"] if a["equiv_crop"] else a["size"],
                       workers=cfg["data"]["workers"], seed=cfg["run"]["seed"], rank=ctx.rank,
                       pin_memory=ctx.device.type == "cuda")


def config_differences(old: dict, new: dict) -> list[str]:
    """``"key: old -> new"`` for the keys whose values differ, ignoring
    :data:`RESUME_FREE_KEYS` and :data:`RESUME_FREE_SECTIONS`."""
    def free(dotted: str) -> bool:
        return dotted.split(".")[0] in RESUME_FREE_SECTIONS or tuple(dotted.split(".")) in RESUME_FREE_KEYS

    return [f"{key}: {a!r} -> {b!r}" for key, a, b in differing_keys(old, new, ignored=free)]


def check_epochs(saved: dict, cfg: dict, trained: int, run_dir: Path) -> None:
    """A resumed run may be extended (a larger ``optim.epochs``) unless its learning rate
    depends on the total: the cosine schedule would jump back up in mid-run."""
    before, now = saved["optim"]["epochs"], cfg["optim"]["epochs"]
    if now < trained:
        raise ValueError(f"{run_dir} has trained {trained} epochs; optim.epochs={now} cannot undo them "
                         "(use another --out)")
    if now != before and cfg["optim"]["schedule"].startswith("cosine"):
        raise ValueError(f"{run_dir}: optim.epochs {before} -> {now} would restart its cosine learning-rate schedule "
                         f"(which decays over optim.epochs) in mid-run; train {now} epochs in a new run (another --out)")


def restore_generator(generator: torch.Generator, saved: torch.Tensor, *, seed: int, epoch: int, say: bool,
                      source: Path) -> None:
    """Set the augmentation generator to its saved state. CPU and CUDA generator states
    differ in size (5,056 bytes of Mersenne Twister, 16 of Philox seed and offset): a state
    saved on another kind of device is replaced by a reseed from ``seed`` and ``epoch``,
    with a note, as the continuation is then not bit-identical. A state of the right size
    that the generator refuses is a damaged checkpoint (ValueError naming ``source``)."""
    if saved.numel() != generator.get_state().numel():
        generator.manual_seed(seed + 1_000_003 * epoch)
        if say:
            print("vision-benchmarks pretrain: the checkpoint's augmentation generator comes from another kind of "
                  f"device than {generator.device.type}; reseeded it from run.seed and the epoch, so this "
                  "continuation is not bit-identical to an uninterrupted run", file=sys.stderr)
        return
    try:
        generator.set_state(saved.cpu())
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{source}: its augmentation generator state cannot be restored ({error}); the "
                         "checkpoint is damaged") from error


#: results.json values measured on a run's weights (by linear-probe and evaluate).
WEIGHT_MEASUREMENTS = ("linear_probe_top1", "linear_probe_top1_random_init", "probe_config", "knn_config")


def drop_stale_measurements(run_dir: Path, results: dict) -> None:
    """Remove from ``results`` (and the run folder) what was measured on earlier weights."""
    from vision_benchmarks.measurements import EVALUATION

    dropped = [key for key in WEIGHT_MEASUREMENTS if results.pop(key, None) is not None]
    if (run_dir / EVALUATION).is_file():
        (run_dir / EVALUATION).unlink()
        dropped.append(EVALUATION)
    if dropped:
        print(f"vision-benchmarks pretrain: {run_dir} has new weights; dropped what was measured on the earlier ones "
              f"({', '.join(dropped)}): run linear-probe / evaluate again", file=sys.stderr)


#: Keys of every checkpoint that ``pretrain`` writes (a protein-care checkpoint.pt lacks most).
CHECKPOINT_KEYS = ("config", "model", "optimizer", "sampler_state", "augment_state", "epoch",
                   "knn_top1_random_init", "train_seconds", "history")


def load_checkpoint(run_dir: Path, device=None) -> dict:
    """``RUN/checkpoint.pt``; ValueError naming it when it is not one that ``pretrain`` wrote."""
    import pickle
    import zipfile

    path = Path(run_dir) / CHECKPOINT
    try:
        ckpt = torch.load(path, map_location=device or "cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable checkpoint ({str(error).splitlines()[0]})") from None
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt] if isinstance(ckpt, dict) else CHECKPOINT_KEYS
    if missing:
        raise ValueError(f"{path} was not written by vision-benchmarks pretrain (it lacks {', '.join(missing)}); "
                         "use another --out")
    return ckpt


def snapshot_paths(run_dir: Path) -> list[Path]:
    """The run's encoder snapshots (``run.snapshot_every``), by epoch."""
    return sorted((Path(run_dir) / SNAPSHOTS).glob("epoch_*.pt"))


def _save_snapshot(run_dir: Path, method, epoch: int) -> None:
    write_torch_atomic(run_dir / SNAPSHOTS / f"epoch_{epoch:04d}.pt",
                       {"epoch": epoch, "encoder": method.encoder.state_dict()})


def _log(run_dir: Path, record: dict) -> None:
    append_json_line(run_dir / METRICS, record)


def _truncate_log(run_dir: Path, epochs: int) -> None:
    """Drop what ``metrics.jsonl`` holds of epochs after the checkpoint being resumed
    (they are trained again, and logged again), and lines torn by a killed run."""
    path = run_dir / METRICS
    if path.is_file():
        kept = [record for record in json_lines(path.read_text(), "epoch") if record["epoch"] <= epochs]
        write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in kept))


def pretrain(cfg: dict, run_dir: str | Path, data: ImageData | None = None) -> dict:
    """Pretrain (or resume) the run described by ``cfg`` in ``run_dir``; returns results
    (on every rank; only rank 0 writes them)."""
    ctx = distributed.setup(cfg["run"]["device"], DEVICE_FLAG)
    try:
        return _pretrain(cfg, Path(run_dir), data, ctx)
    finally:
        distributed.teardown(ctx)


def _pretrain(cfg: dict, run_dir: Path, data: ImageData | None, ctx: distributed.DistContext) -> dict:
    r, o = cfg["run"], cfg["optim"]
    device, main = ctx.device, ctx.is_main
    check_run_folder(run_dir)  # on every rank, before the data: a file, or another tool's run folder
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if r["threads"]:
        torch.set_num_threads(r["threads"])
    batch = distributed.local_sizes(cfg, ctx.world_size)["batch_size"]  # this rank's share
    data = (data or load_data(cfg)).to(device)
    method, augment = build_all(cfg, data, device, ctx.world_size)
    if r["sync_bn"] and ctx.distributed:
        method.encoder = distributed.convert_sync_batchnorm(method.encoder, device)
    elif r["sync_bn"] and main:  # one process (no torchrun, or torchrun with one process): plain BatchNorm
        print("vision-benchmarks pretrain: run.sync_bn = true has no effect in a single process "
              "(its BatchNorm already normalises over the whole batch)", file=sys.stderr)
    forward = distributed.wrap_ddp(method.encoder, ctx)  # the encoder itself in one process
    if r["compile"]:
        forward = torch.compile(forward)
    if forward is not method.encoder:
        method.use_forward(forward)
    optimizer = make_optimizer(o["optimizer"], method.trainable_parameters(), lr=o["lr"],
                               weight_decay=o["weight_decay"], momentum=o["momentum"])
    n = data.train.shape[0]
    steps_per_epoch = n // ctx.world_size // batch
    if steps_per_epoch < 1:
        raise ValueError(f"optim.batch_size={o['batch_size']} exceeds the {n} training images")
    amp = r["amp"] and device.type == "cuda"
    knn_args = dict(k=cfg["knn"]["k"], temperature=cfg["knn"]["temperature"], amp=amp)
    sampler = torch.Generator().manual_seed(r["seed"])  # batch order (CPU), the same on every rank
    loader = _train_loader(cfg, data, method, ctx)  # ImageNet100: JPEGs decoded by DataLoader workers
    aug_gen = torch.Generator(device=device).manual_seed(r["seed"] + 1 + ctx.rank)  # augmentation parameters

    state = {"epoch": 0, "knn_top1_random_init": None, "train_seconds": 0.0, "history": []}
    if (run_dir / CHECKPOINT).is_file():
        ckpt = load_checkpoint(run_dir)  # on the CPU: generator states must be CPU tensors
        saved = fill_defaults(ckpt["config"])  # keys added since it was written: their defaults
        diffs = config_differences(saved, cfg)
        if diffs:
            raise ValueError(f"{run_dir} holds a run with another config ({'; '.join(diffs)}); use another --out")
        if ckpt.get("world_size", 1) != ctx.world_size:
            raise ValueError(f"{run_dir} was trained by {ckpt.get('world_size', 1)} process(es); resume it with "
                             f"as many (now {ctx.world_size})")
        check_epochs(saved, cfg, ckpt["epoch"], run_dir)
        method.load_state_dict(ckpt["model"])  # copied onto the device
        optimizer.load_state_dict(ckpt["optimizer"])
        sampler.set_state(ckpt["sampler_state"])
        restore_generator(aug_gen, ckpt.get("augment_states", [ckpt["augment_state"]])[ctx.rank],
                          seed=r["seed"] + 1 + ctx.rank, epoch=ckpt["epoch"], say=main, source=run_dir / CHECKPOINT)
        state = {k: ckpt[k] for k in state}
        if main:
            _truncate_log(run_dir, state["epoch"])
    elif main:
        t0 = time.perf_counter()
        state["knn_top1_random_init"] = knn_top1(method.encoder.backbone, data, augment, **knn_args)
        _log(run_dir, {"epoch": 0, "knn_top1_random_init": state["knn_top1_random_init"],
                       "seconds": time.perf_counter() - t0})
        if r["snapshot_every"]:
            _save_snapshot(run_dir, method, 0)
    start_epoch = state["epoch"]
    if main:
        write_text_atomic(run_dir / "config.json", json.dumps(cfg, indent=2))
    distributed.barrier(ctx)

    total_steps = o["epochs"] * steps_per_epoch
    warmup = o["warmup_epochs"] / max(1, o["epochs"])
    method.train()
    for epoch in range(state["epoch"], o["epochs"]):
        t_epoch = time.perf_counter()
        order = torch.randperm(n, generator=sampler)
        batches = distributed.shard_batches(order, batch, ctx.rank, ctx.world_size)
        if loader is None:
            batches = batches.to(device)
            inputs = (data.train[b] for b in batches)
        else:
            inputs = (x.to(device, non_blocking=True) for x in loader.epoch(batches, epoch))
        steps = range(steps_per_epoch)
        if r["progress"] and main:
            from tqdm import tqdm
            steps = tqdm(steps, desc=f"epoch {epoch + 1}/{o['epochs']}", leave=False)
        sums: dict[str, float] = {}
        for step, x in zip(steps, inputs):
            global_step = epoch * steps_per_epoch + step
            factor = lr_factor(o["schedule"], global_step / total_steps, warmup=warmup,
                               milestones=o["milestones"], gamma=o["gamma"], epoch=epoch, epochs=o["epochs"])
            for group in optimizer.param_groups:
                group["lr"] = o["lr"] * factor
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                parts = method.step(x, augment, aug_gen, channels_last=r["channels_last"])
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            optimizer.step()
            values = {k: float(v.detach()) for k, v in parts.items()}  # rank 0's own loss parts
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if r["progress"] and main:
                steps.set_postfix(loss=f"{values['loss']:.4f}")
            if main and r["log_every"] and global_step % r["log_every"] == 0:
                _log(run_dir, {"epoch": epoch + 1, "step": global_step, "lr": o["lr"] * factor, **values})
        seconds = time.perf_counter() - t_epoch
        state["train_seconds"] += seconds
        record = {"epoch": epoch + 1, "seconds": seconds, **{k: v / steps_per_epoch for k, v in sums.items()}}
        last = epoch + 1 == o["epochs"]
        if main and r["knn_every"] and (epoch + 1) % r["knn_every"] == 0 and not last:
            record["knn_top1"] = knn_top1(method.encoder.backbone, data, augment, **knn_args)
            method.train()
        state["history"].append(record)
        state["epoch"] = epoch + 1
        if last or (epoch + 1) % r["checkpoint_every"] == 0:
            augment_states = distributed.gather_objects(aug_gen.get_state(), ctx)  # a collective: every rank
            if main:
                write_torch_atomic(run_dir / CHECKPOINT, {
                    "format": 2, "config": cfg, "world_size": ctx.world_size, "model": method.state_dict(),
                    "optimizer": optimizer.state_dict(), "sampler_state": sampler.get_state(),
                    "augment_state": augment_states[0], "augment_states": augment_states, **state,
                })
        if main:
            _log(run_dir, record)
            if r["snapshot_every"] and (last or (epoch + 1) % r["snapshot_every"] == 0):
                _save_snapshot(run_dir, method, epoch + 1)
        distributed.barrier(ctx)

    if not main:
        return {"epochs": state["epoch"], "rank": ctx.rank}
    t0 = time.perf_counter()
    final_knn = knn_top1(method.encoder.backbone, data, augment, **knn_args)
    knn_seconds = time.perf_counter() - t0
    images = state["epoch"] * steps_per_epoch * batch * ctx.world_size
    results = read_json(run_dir / RESULTS) if (run_dir / RESULTS).is_file() else {}
    if state["epoch"] > start_epoch:  # new weights: what was measured on the old ones no longer holds
        drop_stale_measurements(run_dir, results)
    results.update({
        "config": cfg,
        "dataset": cfg["dataset"],
        "method": method_label(cfg),
        "epochs": state["epoch"],
        "knn_top1": final_knn,
        "knn_top1_random_init": state["knn_top1_random_init"],
        "timings": {
            "train_seconds": state["train_seconds"],
            "seconds_per_epoch": state["train_seconds"] / max(1, len(state["history"])),
            "images_per_second": images / state["train_seconds"] if state["train_seconds"] else None,
            "knn_seconds": knn_seconds,
            "device": str(device),
            "world_size": ctx.world_size,
        },
        "history": state["history"],
        "versions": {"torch": torch.__version__},
    })
    write_text_atomic(run_dir / RESULTS, json.dumps(results, indent=2))
    return results

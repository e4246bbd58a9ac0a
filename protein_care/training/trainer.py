"""The CARE training loop for point-cloud encoders.

One step (batch of B clouds per process):

1. gather the clouds from the packed store tensors (:class:`PackedClouds`, on device);
2. augment on device, batched: two invariance views (``--inv-augment``: Haar rotation
   per cloud, small rotations, or rotation-free point augmentations) and, when the loss
   has an equivariance term, two equivariance views (one Haar rotation per chunk of
   B / n_split clouds), built directly as one stacked batch with a few dozen tensor ops
   (:mod:`protein_care.training.views`);
3. ONE forward pass over all views stacked into one batch (fewer, larger kernels than
   four passes; with ``--norm batch`` the pooled vectors are normalised over all views
   of the step together, as in a SimCLR forward of the concatenated views, or view by
   view with ``--norm-stats per-view``, as the release's four separate passes);
   steps 1–2 run for W consecutive steps at once (``--view-window``; 1 on a CPU), each
   step's views then being slices of the window's;
4. the loss core (:func:`protein_care.losses.combined_loss`) and an AdamW step.

``--embedding split``: block A gets InfoNCE on Haar-rotated invariance views; block B
gets ``--loss`` (CARE by default) on ``--inv-augment`` views (``points`` by default)
plus Haar per-chunk equivariance views; the loss is the sum of the two.

Randomness of a window whose first step is s, on rank r, comes from a generator seeded
with (seed, r, s); windows start at the steps that are multiples of W (a window may hold
the end of one epoch and the start of the next), and the data order comes from (seed,
epoch): a resumed run replays the same batches and views.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from protein_care import __version__
from data_pipeline.atomic_files import (
    append_json_line, json_lines, temporary_writer_alive, write_text_atomic, write_torch_atomic,
)
from protein_care.augment import cap_points
from protein_care.devices import resolve_device
from protein_care.losses import combined_loss, loss_variant, orbit_similarity
from protein_care.runs import (
    CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME, SNAPSHOT_DIR, initial_encoder, read_config,
    snapshot_path, write_json_atomic,
)
from protein_care.training import distributed
from protein_care.training.checkpoint import load_checkpoint, rng_state, set_rng_state, unwrap_model
from protein_care.training.config import derive, describe_mismatches, validate, with_defaults
from protein_care.training.data import (
    PackedClouds, epoch_batches, open_store, split_indices, store_config_hash, store_num_residue_types,
)
from protein_care.training.optim import build_optimizer
from protein_care.training.views import StackedViews, default_view_window, split_steps, stacked_views, step_view_kinds


def step_generator(device: torch.device, seed: int, rank: int, step: int) -> torch.Generator:
    """The augmentation RNG of one step: a function of (seed, rank, step) only."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + rank * 10_007 + step) % (2**63 - 1))
    return generator


class Trainer:
    """Holds the model, optimizer, data and settings of one process.

    Args:
        config: the run config (values over the defaults; see
            :mod:`protein_care.training.config`).
        store: a ``PointCloudStore``, its path, or an object with its interface; defaults
            to ``config["store"]``.
        ctx: the distributed context (one process by default).
    """

    def __init__(self, config: dict, *, store=None, ctx: distributed.DistContext | None = None):
        self.ctx = ctx or distributed.DistContext(device=resolve_device(config.get("device") or "auto"))
        config = with_defaults(config)
        validate(config)
        store_obj = open_store(store if store is not None else config["store"])
        indices = split_indices(store_obj, config["split"])
        packed = PackedClouds.from_store(store_obj, indices)
        self.config = derive(
            config,
            train_size=len(packed),
            world_size=self.ctx.world_size,
            length_scale=packed.mean_radius_of_gyration(),
            num_residue_types=store_num_residue_types(store_obj),
        )
        store_path = getattr(store_obj, "path", None) or (config["store"] if isinstance(config["store"], (str, Path)) else None)
        self.config["store_path"] = str(Path(store_path).resolve()) if store_path else None
        self.config["store_config_hash"] = store_config_hash(store_obj)
        self.config["versions"] = {"protein_care": __version__, "torch": torch.__version__}
        self.config["device_name"] = (
            f"{self.ctx.device} ({torch.cuda.get_device_name(self.ctx.device)})" if self.ctx.device.type == "cuda" else "cpu"
        )
        self.device = self.ctx.device
        self.data = packed.to(self.device)
        self.variant = loss_variant(self.config["loss"])
        self.split = self.config["embedding"] == "split"
        self.view_kinds = step_view_kinds(self.config["inv_augment"], equivariance=self.variant.needs_equivariance_views,
                                          split=self.split)
        if self.config["view_window"] is None:
            points = min(float(packed.sizes.float().mean()) if len(packed) else 0.0, self.config["train_points"] or float("inf"))
            self.config["view_window"] = default_view_window(self.device, len(self.view_kinds) * self.config["batch_size"] * points)
        self._pending = (None, [])  # (first step of the view window, its views)
        self._log_sums, self._log_start = {}, time.perf_counter()  # loss parts since the last metrics line
        self._orders: dict[int, torch.Tensor] = {}  # epoch → its batches, the last two epochs
        self.model = initial_encoder(self.config).to(self.device)
        self.ddp_model = distributed.wrap_ddp(self.model, self.ctx)
        self.forward = torch.compile(self.ddp_model, dynamic=True) if self.config["compile"] else self.ddp_model
        self.optimizer, self.scheduler = build_optimizer(self.model, self.config)
        self.amp = bool(self.config["amp"]) and self.device.type == "cuda"
        self.step, self.epoch, self.batch_in_epoch, self.elapsed_before = 0, 0, 0, 0.0

    # ------------------------------------------------------------------ one step

    def make_views(self, indices: torch.Tensor, step: int) -> StackedViews:
        """Data loading and augmentation for one step (everything before the forward):
        the step's views (:attr:`view_kinds`) stacked into one batch."""
        return self.make_window_views(indices[None], step)[0]

    def make_window_views(self, batches: torch.Tensor, first_step: int) -> list[StackedViews]:
        """The views of the W steps ``batches`` (W, B), made as one batch of W·B clouds
        (W·n_split chunks, so no chunk crosses two steps), one :class:`StackedViews` per
        step; the draws come from one generator seeded with ``first_step``."""
        cfg = self.config
        w, b = batches.shape
        pos, x, batch = self.data.gather(batches.reshape(-1), features=cfg["use_residue_features"])
        g = step_generator(self.device, cfg["seed"], self.ctx.rank, first_step)
        if cfg["train_points"]:  # one random subset per cloud, shared by all its views
            pos, x, batch = cap_points(pos, x, batch, w * b, cfg["train_points"], g)
        stacked = stacked_views(pos, x, batch, w * b, self.view_kinds, length_scale=cfg["length_scale"],
                                n_split=w * cfg["n_split"], generator=g, max_angle=cfg["max_angle"],
                                jitter=cfg["jitter"], keep_fraction=cfg["keep_fraction"])
        return split_steps(stacked, w)

    def next_views(self) -> StackedViews:
        """The views of step :attr:`step`, from the window of ``view_window`` steps that
        holds it (steps ⌊step / W⌋·W … , at most up to the last planned step), made when
        its first step is reached (or, on resume, mid-window)."""
        first = self.step - self.step % self.config["view_window"]
        if self._pending[0] != first:
            self._pending = (None, [])  # free the previous window first
            self._pending = (first, self.make_window_views(self.window_batches(first), first))
        return self._pending[1][self.step - first]

    def window_batches(self, first: int) -> torch.Tensor:
        """``(W, B)``: the clouds of the view window that starts at step ``first``
        (``view_window`` steps, fewer at the end of the planned steps), each step's batch
        taken from its own epoch's order."""
        cfg = self.config
        w, per_epoch = cfg["view_window"], cfg["steps_per_epoch"]
        steps = range(first, max(first + 1, min(first + w, cfg["total_steps"])))
        return torch.stack([self.epoch_order(t // per_epoch)[t % per_epoch] for t in steps])

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's batches of ``epoch``, ``(steps_per_epoch, B)`` (:func:`epoch_batches`)."""
        if epoch not in self._orders:
            cfg = self.config
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = epoch_batches(cfg["train_size"], cfg["batch_size"], seed=cfg["seed"], epoch=epoch,
                                                rank=self.ctx.rank, world_size=self.ctx.world_size)
        return self._orders[epoch]

    def compute_loss(self, stacked: StackedViews) -> dict[str, torch.Tensor]:
        """One forward over the stacked views, then the loss core."""
        cfg = self.config
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext()
        kw = dict(temperature=cfg["temperature"], lam=cfg["lam"], n_split=cfg["n_split"], normalization=cfg["normalization"])
        views = stacked.num_views if cfg["norm_stats"] == "per-view" else 1  # BatchNorm statistics per view
        with autocast:  # the loss core runs outside, in float32
            if not self.split:
                z = self.forward(stacked.pos, stacked.x, stacked.batch, stacked.num_graphs, views=views)
            else:  # block A sees the first two views (Haar-rotated), block B the others
                split_at = 2 * (stacked.num_graphs // stacked.num_views)
                z_a, z_b = self.forward(stacked.pos, stacked.x, stacked.batch, stacked.num_graphs, blocks=True,
                                        split_at=split_at, views=views)
        if not self.split:
            views = z.float().chunk(stacked.num_views)
            return self._with_anti_invariance(combined_loss(cfg["loss"], *views, **kw), views)
        a = z_a.float().chunk(2)  # block A: the Haar-rotated invariance views
        b = z_b.float().chunk(stacked.num_views - 2)  # block B: its invariance (+ equivariance) views
        parts_a = combined_loss("simclr", *a, **kw)
        parts_b = self._with_anti_invariance(combined_loss(cfg["loss"], *b, **kw), b)
        out = {f"a/{k}": v for k, v in parts_a.items() if k != "loss"}
        out.update({f"b/{k}": v for k, v in parts_b.items() if k != "loss"})
        out["loss"] = parts_a["loss"] + parts_b["loss"]
        return out

    def _with_anti_invariance(self, parts: dict, views: tuple) -> dict:
        """``parts`` plus μ·:func:`~protein_care.losses.orbit_similarity` of the two
        equivariance views (``--anti-invariance`` μ > 0 and a loss that has them)."""
        mu = self.config["anti_invariance"]
        if not mu or len(views) < 4:
            return parts
        similarity = orbit_similarity(views[-2], views[-1])
        return {**parts, "orbit_similarity": similarity, "loss": parts["loss"] + mu * similarity}

    def optimize(self, views: StackedViews) -> dict[str, torch.Tensor]:
        """Forward, backward and one optimizer + scheduler step; returns detached parts."""
        self.ddp_model.train()
        parts = self.compute_loss(views)
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.optimizer.step()
        self.scheduler.step()
        return {k: v.detach() for k, v in parts.items()}

    # ------------------------------------------------------------------ state

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed_s": self.elapsed_before + (time.perf_counter() - self._start if hasattr(self, "_start") else 0.0),
            # the loss parts since the last metrics line: a resumed run logs them too
            "log_sums": {k: float(v) for k, v in self._log_sums.items()},
            "log_seconds": time.perf_counter() - self._log_start,
        }

    def load_state(self, payload: dict) -> None:
        unwrap_model(self.model).load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
        self.step, self.epoch = int(payload["step"]), int(payload["epoch"])
        self.batch_in_epoch, self.elapsed_before = int(payload["batch_in_epoch"]), float(payload["elapsed_s"])
        self._pending = (None, [])
        self._log_sums = dict(payload.get("log_sums", {}))  # checkpoints before they were saved: none
        self._log_start = time.perf_counter() - float(payload.get("log_seconds", 0.0))

    def save(self, run_dir: Path, *, snapshot: bool = False) -> None:
        """Write the step's snapshot, then ``checkpoint.pt``, on rank 0: a process killed
        between the two resumes from the previous checkpoint and redoes the step (the
        same weights), so no snapshot is lost."""
        if self.ctx.is_main:
            state = self.state()
            if snapshot:
                self._write_snapshot(run_dir, state["model"])
            write_torch_atomic(run_dir / CHECKPOINT_NAME, state)
        distributed.barrier(self.ctx)

    def _write_snapshot(self, run_dir: Path, model_state: dict) -> None:
        write_torch_atomic(snapshot_path(run_dir, self.step), {"model": model_state, "step": self.step, "epoch": self.epoch})

    def _snapshot_due(self) -> bool:
        """Whether the run writes a snapshot at :attr:`step` (a snapshot step, or the end)."""
        return self.step in self.config["snapshot_steps"] or self.step == self.config["total_steps"]

    # ------------------------------------------------------------------ loop

    def prepare_run_dir(self, run_dir: Path, resume: bool) -> None:
        """Refuse to overwrite a run; on ``resume`` check the settings and load the
        checkpoint; remove killed writers' temporaries; write the checkpoint step's
        snapshot if due and missing; write ``config.json``; drop metrics logged after
        the checkpoint."""
        ckpt = run_dir / CHECKPOINT_NAME
        if ckpt.is_file() and not resume:
            raise ValueError(f"--out {run_dir} already holds a run (pass --resume to continue it, or choose another folder)")
        if resume and ckpt.is_file():
            mismatched = describe_mismatches(read_config(run_dir), self.config)
            if mismatched:
                raise ValueError(f"--resume: these settings differ from the run in {run_dir}: {mismatched}")
            self.load_state(load_checkpoint(ckpt))
        if self.ctx.is_main:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ValueError(f"--out {run_dir}: a file is in the way (the run folder, or a folder above it, "
                                 "exists as a file)") from None
            _remove_dead_temporaries(run_dir)
            if self.step and self._snapshot_due() and not snapshot_path(run_dir, self.step).is_file():
                self._write_snapshot(run_dir, self.model.state_dict())  # lost by a kill after the checkpoint
            write_json_atomic(self.config, run_dir / CONFIG_NAME)
            _truncate_metrics(run_dir / METRICS_NAME, self.step)
        distributed.barrier(self.ctx)

    def run(self, run_dir, *, resume: bool = False, stop_at_step: int | None = None, progress: bool | None = None) -> dict:
        """Train until the planned ``total_steps``, or until ``max_minutes`` have passed
        (or ``stop_at_step``, which stops like a preemption: for tests), checkpointing
        every ``checkpoint_every`` steps and at the snapshot steps; returns a summary."""
        cfg = self.config
        run_dir = Path(run_dir)
        self.prepare_run_dir(run_dir, resume)
        total = cfg["total_steps"]
        bar = _progress(total, self.step, enabled=(cfg["progress"] if progress is None else progress) and self.ctx.is_main)
        self._start = time.perf_counter()
        deadline = self._start + 60 * cfg["max_minutes"] if cfg["max_minutes"] else None
        if not self._log_sums:  # else: resumed mid-window, with the checkpoint's sums and seconds
            self._log_start = time.perf_counter()
        stopped = False
        while self.step < total and not stopped:
            self.train_one(self.next_views())
            bar.update(1)
            if self.step % cfg["log_every"] == 0 or self.step == total:
                bar.set_postfix(_short(self._log(run_dir)))
            snapshot = self.step in cfg["snapshot_steps"]
            if snapshot or self.step % cfg["checkpoint_every"] == 0 or self.step == total:
                self.save(run_dir, snapshot=snapshot or self.step == total)
            out_of_time = deadline is not None and time.perf_counter() > deadline
            stopped = distributed.any_rank(self.ctx, out_of_time) or (stop_at_step is not None and self.step >= stop_at_step)
        if stopped and self.step < total:  # preempted: log and checkpoint where we are
            if self._log_sums:
                self._log(run_dir)
            self.save(run_dir, snapshot=stop_at_step is None)
        bar.close()
        self._pending, self._orders = (None, []), {}
        distributed.broadcast_buffers(self.model, self.ctx)
        return {"step": self.step, "epoch": self.epoch, "total_steps": total, "completed": self.step >= total,
                "run_dir": str(run_dir)}

    def train_one(self, views: StackedViews) -> None:
        """One optimizer step on ``views``; advances the data-order state (at the end of
        an epoch it points at the next epoch's first batch)."""
        parts = self.optimize(views)
        self.step += 1
        self.batch_in_epoch += 1
        if self.batch_in_epoch == self.config["steps_per_epoch"]:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        for k, v in parts.items():
            self._log_sums[k] = self._log_sums.get(k, 0.0) + v
        self._log_sums["_steps"] = self._log_sums.get("_steps", 0) + 1

    def _log(self, run_dir: Path) -> dict:
        """Append the mean of the parts since the last line to ``metrics.jsonl``."""
        sums, seconds = self._log_sums, time.perf_counter() - self._log_start
        steps = sums.pop("_steps", 1)
        record = {"step": self.step, "epoch": self.epoch + self.batch_in_epoch / self.config["steps_per_epoch"]}
        record.update({k: float(v) / steps for k, v in sums.items()})
        record["lr"] = self.scheduler.get_last_lr()[0]
        record["clouds_per_s"] = steps * self.config["batch_size"] * self.ctx.world_size / max(seconds, 1e-9)
        record["elapsed_s"] = self.elapsed_before + time.perf_counter() - self._start
        if self.ctx.is_main:
            append_json_line(run_dir / METRICS_NAME, record)
        self._log_sums, self._log_start = {}, time.perf_counter()
        return record


def _short(record: dict) -> dict:
    """The loss parts for the progress bar, with short names."""
    names = {"alignment": "align", "uniformity": "unif", "equivariance": "equi"}
    out = {}
    for key, value in record.items():
        head, _, tail = key.rpartition("/")
        if tail in names:
            out[(head + "/" if head else "") + names[tail]] = f"{value:.3f}"
    return out


def _remove_dead_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of killed writers in the run folder and its snapshot
    folder (``.NAME.<pid>.<hex>.tmp``); those of a writer still running are kept."""
    for folder in (run_dir, run_dir / SNAPSHOT_DIR):
        for stale in folder.glob(".*.tmp"):
            if not temporary_writer_alive(stale):
                stale.unlink(missing_ok=True)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they will be redone)."""
    if not path.is_file():
        return
    kept = [record for record in json_lines(path.read_text(), "step") if record["step"] <= step]  # torn lines go too
    write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in kept))


def _progress(total: int, initial: int, *, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, file=sys.stderr)


def train(config: dict, *, store=None, resume: bool | None = None, stop_at_step: int | None = None) -> dict:
    """Run ``protein-care train`` from a config dict (values over the defaults): joins a
    process group under torchrun, trains, checkpoints into ``config["out"]``."""
    merged = with_defaults(config)
    if not merged["out"]:
        raise ValueError("--out: a run folder is needed")
    ctx = distributed.setup(merged["device"])
    try:
        trainer = Trainer(merged, store=store, ctx=ctx)
        return trainer.run(merged["out"], resume=merged["resume"] if resume is None else resume, stop_at_step=stop_at_step)
    finally:
        distributed.teardown(ctx)

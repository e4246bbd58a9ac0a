"""The training loop in-process on a synthetic store (protein_care.training, runs)."""

import json

import numpy as np
import pytest
import torch

from protein_care.embedding import embed_clouds
from protein_care.runs import initial_encoder, list_snapshots, load_run, read_metrics
from protein_care.training import Trainer, train
from protein_care.training.checkpoint import load_checkpoint
from protein_care.training.config import derive, validate, with_defaults
from protein_care.training.data import PackedClouds, epoch_batches
from protein_care.training.optim import warmup_cosine

from .synthetic_store import SyntheticStore

TINY = {"hidden": 16, "dim": 8, "phi_layers": 1, "rho_layers": 1, "batch_size": 8, "n_split": 2, "epochs": 3,
        "device": "cpu", "log_every": 2, "checkpoint_every": 2, "progress": False}


@pytest.fixture(scope="module")
def store():
    return SyntheticStore(30)  # 24 clouds in "train": 3 steps per epoch at batch 8


def params(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


# ----------------------------------------------------------------------------- data path


def test_epoch_order_is_a_function_of_seed_and_epoch_and_shards_are_disjoint():
    a = epoch_batches(50, 8, seed=1, epoch=3)
    assert a.shape == (6, 8) and len(set(a.flatten().tolist())) == 48  # drop-last, no repeats
    assert torch.equal(a, epoch_batches(50, 8, seed=1, epoch=3))
    assert not torch.equal(a, epoch_batches(50, 8, seed=1, epoch=4))
    r0 = epoch_batches(50, 4, seed=1, epoch=0, rank=0, world_size=2)
    r1 = epoch_batches(50, 4, seed=1, epoch=0, rank=1, world_size=2)
    assert r0.shape == r1.shape == (6, 4)
    assert not set(r0.flatten().tolist()) & set(r1.flatten().tolist())


def test_packed_gather_equals_concatenating_the_clouds(store):
    packed = PackedClouds.from_store(store)
    idx = torch.tensor([5, 0, 17, 5])
    pos, x, batch = packed.gather(idx)
    assert torch.equal(pos, torch.cat([torch.as_tensor(store[i]) for i in idx.tolist()]))
    assert torch.equal(x, torch.cat([torch.as_tensor(store.features(i)).long() for i in idx.tolist()]))
    assert torch.equal(batch, torch.repeat_interleave(torch.arange(4), torch.tensor([len(store[i]) for i in idx.tolist()])))
    pos2, x2, batch2 = packed.gather(idx, features=False)  # the trainer's call without residue features
    assert x2 is None and torch.equal(pos2, pos) and torch.equal(batch2, batch)


def test_packed_from_store_arrays_equals_reading_cloud_by_cloud(store):
    class Packed:  # the PointCloudStore layout: coords, _features, offsets as arrays
        coords = np.concatenate(store.clouds)
        _features = np.concatenate(store.feats)
        offsets = np.concatenate([[0], np.cumsum([len(c) for c in store.clouds])])
        ids, meta = store.ids, store.meta

        def __len__(self):
            return len(store)

    idx = np.array([3, 1, 10])
    fast, slow = PackedClouds.from_store(Packed(), idx), PackedClouds.from_store(store, idx)
    assert torch.equal(fast.coords, slow.coords) and torch.equal(fast.features, slow.features)
    assert torch.equal(fast.offsets, slow.offsets) and fast.ids == slow.ids


def test_warmup_then_cosine_schedule():
    f = [warmup_cosine(s, warmup_steps=4, total_steps=20, min_lr_ratio=0.1) for s in range(21)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0] and f[4] == 1.0
    assert all(a >= b for a, b in zip(f[4:], f[5:])) and abs(f[20] - 0.1) < 1e-12


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "bad, match",
    [({"batch_size": 10, "n_split": 4}, "--n-split 4 must divide --batch-size 10"), ({"batch_size": 8, "n_split": 8}, "fewer than 2"),
     ({"loss": "byol"}, "--loss"), ({"inv_augment": "flip"}, "--inv-augment"), ({"keep_fraction": 0.0}, "--keep-fraction"),
     ({"train_points": -1}, "--train-points"), ({"anti_invariance": -1.0}, "--anti-invariance"),
     ({"max_angle": 200.0}, "--max-angle"), ({"temperature": 0.0}, "--temperature"), ({"view_window": 0}, "--view-window")],
)
def test_bad_settings_name_the_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        validate(with_defaults(bad))


def test_train_points_caps_every_view_and_both_equivariance_views_share_the_points(store):
    trainer = Trainer({**TINY, "out": None, "train_points": 5, "loss": "care", "inv_augment": "rotation"}, store=store)
    views = trainer.make_views(torch.arange(8), step=0).views()
    assert len(views) == 4
    for view in views:
        assert int(torch.bincount(view.batch, minlength=8).max()) <= 5
    e1, e2 = views[2:]
    assert torch.equal(e1.batch, e2.batch)
    for k in range(8):  # the same points in both views: equal pairwise distances
        a, b = e1.pos[e1.batch == k], e2.pos[e2.batch == k]
        torch.testing.assert_close(torch.cdist(a, a), torch.cdist(b, b), atol=1e-5, rtol=0)
    full = Trainer({**TINY, "out": None, "loss": "care", "inv_augment": "rotation"}, store=store)
    assert int(torch.bincount(full.make_views(torch.arange(8), step=0).views()[0].batch).max()) > 5


def test_derived_values():
    cfg = derive(with_defaults({"batch_size": 8, "n_split": 2, "epochs": 5, "max_steps": 7}), train_size=30, world_size=1,
                 length_scale=12.5, num_residue_types=21)
    assert cfg["steps_per_epoch"] == 3 and cfg["total_steps"] == 7 and cfg["length_scale"] == 12.5
    assert cfg["inv_augment"] == "rotation" and cfg["snapshot_steps"] == [2, 4, 5, 7] and cfg["warmup_steps"] == 1
    with pytest.raises(ValueError, match="no full batch"):
        derive(with_defaults({"batch_size": 64, "n_split": 2}), train_size=30, world_size=1, length_scale=1.0, num_residue_types=21)


# ----------------------------------------------------------------------------- runs


def test_a_run_writes_config_metrics_checkpoint_and_snapshots(store, tmp_path):
    out = tmp_path / "run"
    summary = train({**TINY, "out": str(out)}, store=store)
    assert summary["completed"] and summary["step"] == 9
    config = json.loads((out / "config.json").read_text())
    for key in ("length_scale", "num_residue_types", "train_size", "store_config_hash", "loss", "lam", "n_split", "seed"):
        assert key in config
    assert config["train_size"] == 24 and config["store_config_hash"] == "synthetic"
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [2, 4, 6, 8, 9]
    for key in ("epoch", "alignment", "uniformity", "equivariance", "loss", "lr", "clouds_per_s", "elapsed_s"):
        assert key in metrics[-1]
    payload = load_checkpoint(out / "checkpoint.pt")  # weights_only=True
    assert payload["step"] == 9 and payload["epoch"] == 3 and payload["batch_in_epoch"] == 0
    assert {"model", "optimizer", "scheduler", "rng"} <= set(payload)
    assert [s for s, _ in list_snapshots(out)] == config["snapshot_steps"] == [2, 4, 7, 9]


def test_load_run_gives_the_trained_encoders_embeddings(store, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer({**TINY, "out": str(out)}, store=store)
    trainer.run(out)
    run = load_run(out)
    assert run.step == 9 and not run.encoder.training
    coords = [store[i] for i in range(6)]
    ls = run.config["length_scale"]
    torch.testing.assert_close(embed_clouds(run.encoder, coords, length_scale=ls), embed_clouds(trainer.model, coords, length_scale=ls))
    init = load_run(out, checkpoint="init").encoder
    assert torch.equal(params(init), params(initial_encoder(run.config)))
    assert not torch.equal(params(init), params(run.encoder))
    snap = load_run(out, checkpoint="step_4")
    assert snap.step == 4
    with pytest.raises(FileNotFoundError, match="snapshots"):
        load_run(out, checkpoint="step_3")


@pytest.mark.parametrize("window, stop", [(1, 4), (2, 5), (4, 5)])
def test_resume_mid_epoch_equals_an_uninterrupted_run(store, tmp_path, window, stop):
    """With ``view_window`` 2 or 4 the stop falls inside a window (steps 4–5, or 4–7,
    which crosses from epoch 1 into epoch 2): the resumed run remakes that window."""
    tiny = {**TINY, "view_window": window}
    straight = tmp_path / "straight"
    train({**tiny, "out": str(straight)}, store=store)
    broken = tmp_path / "broken"
    first = train({**tiny, "out": str(broken)}, store=store, stop_at_step=stop)  # mid-epoch 1 (3 steps per epoch)
    assert not first["completed"] and first["step"] == stop
    assert load_checkpoint(broken / "checkpoint.pt")["batch_in_epoch"] == stop - 3
    second = train({**tiny, "out": str(broken), "resume": True}, store=store)
    assert second["completed"]
    a, b = load_run(straight).encoder, load_run(broken).encoder
    assert torch.equal(params(a), params(b))
    straight_steps = [m["step"] for m in read_metrics(straight)]
    assert [m["step"] for m in read_metrics(broken)] == sorted({*straight_steps, stop})  # + the preempted step's line


def test_a_run_killed_between_a_checkpoint_and_a_log_line_logs_the_same_losses(store, tmp_path):
    """Checkpoint at step 5, log lines every 4 steps, killed at step 7 (no graceful stop):
    the losses of steps 5 (before the checkpoint) to 8 still make the step-8 line."""
    tiny = {**TINY, "log_every": 4, "checkpoint_every": 5, "epochs": 4, "snapshots": 0}  # 12 steps
    straight = tmp_path / "straight"
    train({**tiny, "out": str(straight)}, store=store)
    killed = Trainer({**tiny, "out": str(tmp_path / "killed")}, store=store)
    real_train_one = killed.train_one

    def train_one(views):
        real_train_one(views)
        if killed.step == 7:
            raise KeyboardInterrupt  # as a kill: no last log line, no checkpoint at step 7

    killed.train_one = train_one
    with pytest.raises(KeyboardInterrupt):
        killed.run(tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 5
    train({**tiny, "out": str(tmp_path / "killed"), "resume": True}, store=store)
    lines = {m["step"]: m for m in read_metrics(tmp_path / "killed")}
    for m in read_metrics(straight):
        assert lines[m["step"]]["loss"] == pytest.approx(m["loss"], rel=1e-6), m["step"]


def test_resume_refuses_changed_settings_and_fresh_runs_refuse_an_existing_folder(store, tmp_path):
    out = tmp_path / "run"
    train({**TINY, "out": str(out)}, store=store, stop_at_step=2)
    with pytest.raises(ValueError, match="lam"):
        train({**TINY, "out": str(out), "resume": True, "lam": 0.5}, store=store)
    with pytest.raises(ValueError, match="--resume"):
        train({**TINY, "out": str(out)}, store=store)


@pytest.mark.parametrize(
    "extra",
    [{"loss": "simclr"}, {"loss": "unif"}, {"loss": "inv"}, {"loss": "equi-unif"},
     {"inv_augment": "points"}, {"inv_augment": "posed-points"}, {"inv_augment": "small-rotation", "max_angle": 20.0},
     {"encoder": "set-transformer", "heads": 2}, {"encoder": "pointnet", "use_residue_features": True}],
)
def test_every_objective_augmentation_and_encoder_trains(store, tmp_path, extra):
    summary = train({**TINY, "epochs": 1, "out": str(tmp_path / "run"), **extra}, store=store)
    assert summary["completed"]
    last = read_metrics(tmp_path / "run")[-1]
    assert np.isfinite(last["loss"]) and ("equivariance" in last) == (extra.get("loss", "care") in ("care", "equi-unif"))


@pytest.mark.parametrize("embedding, key", [("single", "orbit_similarity"), ("split", "b/orbit_similarity")])
def test_anti_invariance_adds_the_orbit_similarity_of_the_equivariance_views(store, tmp_path, embedding, key):
    train({**TINY, "epochs": 1, "embedding": embedding, "loss": "care", "anti_invariance": 2.0,
           "out": str(tmp_path / "run")}, store=store)
    last = read_metrics(tmp_path / "run")[-1]
    assert -1.0 <= last[key] <= 1.0
    trainer = Trainer({**TINY, "out": None, "embedding": embedding, "loss": "care", "anti_invariance": 2.0}, store=store)
    parts = trainer.compute_loss(trainer.make_views(epoch_batches(24, 8, seed=0, epoch=0)[0], 0))
    without = Trainer({**TINY, "out": None, "embedding": embedding, "loss": "care"}, store=store)
    base = without.compute_loss(without.make_views(epoch_batches(24, 8, seed=0, epoch=0)[0], 0))
    assert key not in base  # off by default
    torch.testing.assert_close(parts["loss"], base["loss"] + 2.0 * parts[key])  # same seed: same weights and views


def test_split_embedding_trains_two_blocks(store, tmp_path):
    train({**TINY, "epochs": 1, "embedding": "split", "out": str(tmp_path / "run")}, store=store)
    last = read_metrics(tmp_path / "run")[-1]
    for key in ("a/alignment", "a/uniformity", "b/alignment", "b/uniformity", "b/equivariance", "loss"):
        assert np.isfinite(last[key])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["inv_augment"] == "points"  # block B's default


@pytest.mark.parametrize("window", [1, 2])
def test_each_epoch_takes_the_batches_of_its_own_permutation(store, tmp_path, monkeypatch, window):
    seen, windows = [], []
    original = Trainer.make_window_views

    def spy(self, batches, first_step):
        seen.extend(batches.clone())
        windows.append((first_step, len(batches)))
        return original(self, batches, first_step)

    monkeypatch.setattr(Trainer, "make_window_views", spy)
    train({**TINY, "view_window": window, "out": str(tmp_path / "run")}, store=store)
    # windows start at the steps that are multiples of W, across epochs of 3 batches, and end at the last step
    assert windows == ([(s, 1) for s in range(9)] if window == 1 else [(0, 2), (2, 2), (4, 2), (6, 2), (8, 1)])
    expected = torch.cat([epoch_batches(24, 8, seed=0, epoch=e) for e in range(3)])
    assert torch.equal(torch.stack(seen), expected)
    assert not torch.equal(expected[:3], expected[3:6])


def test_underscore_annotations_in_config_json_do_not_block_resume(store, tmp_path):
    out = tmp_path / "run"
    train({**TINY, "out": str(out)}, store=store, stop_at_step=2)
    saved = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**saved, "_train_seconds": 1.5}))
    assert train({**TINY, "out": str(out), "resume": True}, store=store)["completed"]
    assert Trainer({**saved, "_note": "x", "out": str(out)}, store=store).config["total_steps"] == 9


@pytest.mark.parametrize("embedding", ["single", "split"])
def test_per_view_norm_statistics_train_and_change_the_step(store, tmp_path, embedding):
    config = {**TINY, "out": None, "embedding": embedding, "loss": "care"}
    views = None
    parts = {}
    for stats in ("joint", "per-view"):
        trainer = Trainer({**config, "norm_stats": stats}, store=store)
        views = views or trainer.make_views(epoch_batches(24, 8, seed=0, epoch=0)[0], 0)
        parts[stats] = trainer.compute_loss(views)  # same seed: same weights, same views
    key = "equivariance" if embedding == "single" else "b/equivariance"
    assert torch.isfinite(parts["per-view"]["loss"])
    assert not torch.isclose(parts["joint"][key], parts["per-view"][key])
    summary = train({**TINY, "epochs": 1, "embedding": embedding, "norm_stats": "per-view",
                     "out": str(tmp_path / "run")}, store=store)
    assert summary["completed"]


def test_a_setting_added_after_a_run_started_counts_as_its_default_on_resume(store, tmp_path):
    out = tmp_path / "run"
    train({**TINY, "out": str(out)}, store=store, stop_at_step=2)
    saved = json.loads((out / "config.json").read_text())
    del saved["norm_stats"]  # as written before the setting existed
    (out / "config.json").write_text(json.dumps(saved))
    assert train({**TINY, "out": str(out), "resume": True}, store=store)["completed"]
    with pytest.raises(ValueError, match="--norm-stats .bogus.: expected one of"):
        train({**TINY, "out": str(tmp_path / "other"), "norm_stats": "bogus"}, store=store)

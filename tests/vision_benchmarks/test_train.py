"""Methods and the training loop on tiny digits runs: every objective steps, CARE makes
four forward passes, MoCo's momentum encoder and queue behave, checkpoints resume to the
same weights, and results.json holds what the report needs."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from vision_benchmarks.config import load_config
from vision_benchmarks.data import load_dataset
from vision_benchmarks.evaluate import lr_factor
from vision_benchmarks.methods import MoCo
from vision_benchmarks.train import CHECKPOINT, build_all, compiles_augment, load_checkpoint, pretrain

TINY = [
    "run.device=cpu", "run.progress=false", "run.channels_last=false", "model.width=4",
    "data.train_subset=48", "data.test_subset=24", "optim.batch_size=16", "optim.epochs=1",
    "method.n_split=4", "method.equiv_batch_size=0", "knn.k=5", "moco.queue_size=32", "moco.key_bn_splits=2",
]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(train=48, test=24)


def tiny(config="digits_care", *extra):
    return load_config(config, [*TINY, *extra])


@pytest.mark.parametrize("framework,loss", [
    ("simclr", "simclr"), ("simclr", "care"), ("simclr", "inv"), ("simclr", "unif"), ("simclr", "equi-unif"),
    ("moco", "simclr"), ("moco", "care"),
])
def test_every_objective_takes_a_finite_step(framework, loss, digits):
    cfg = tiny("digits_care", f"method.framework={framework}", f"method.loss={loss}")
    method, augment = build_all(cfg, digits, torch.device("cpu"))
    parts = method.step(digits.train[:16], augment, torch.Generator().manual_seed(0))
    assert torch.isfinite(parts["loss"]) and parts["loss"].requires_grad
    assert ("equivariance" in parts) == (loss in ("care", "equi-unif"))
    parts["loss"].backward()
    grads = [p.grad for p in method.encoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("loss,passes", [("care", 4), ("simclr", 2)])
def test_care_makes_four_forward_passes_and_simclr_two(loss, passes, digits):
    cfg = tiny("digits_care", f"method.loss={loss}")
    method, augment = build_all(cfg, digits, torch.device("cpu"))
    sizes = []
    method.encoder.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    method.step(digits.train[:16], augment, torch.Generator().manual_seed(0))
    assert sizes == [16] * passes


@pytest.mark.parametrize("framework,equiv_batch,sizes", [
    ("simclr", 0, [64]), ("simclr", 8, [48]), ("moco", 0, [48]),  # MoCo: v1, ẽ1, ẽ2 (v2 is the key encoder's)
])
def test_joint_passes_embed_the_online_views_in_one_forward(framework, equiv_batch, sizes, digits):
    cfg = tiny("digits_care", "method.passes=joint", f"method.framework={framework}",
               f"method.equiv_batch_size={equiv_batch}", "method.n_split=2")
    method, augment = build_all(cfg, digits, torch.device("cpu"))
    seen = []
    method.encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    parts = method.step(digits.train[:16], augment, torch.Generator().manual_seed(0))
    assert seen == sizes and torch.isfinite(parts["loss"])


@pytest.mark.parametrize("framework", ["simclr", "moco"])
def test_joint_and_per_view_passes_agree_without_batch_statistics(framework, digits):
    """In eval mode (no batch statistics) joining the views changes nothing: same loss
    parts, same gradients; in training mode BatchNorm sees all views at once, so they differ."""
    cfg = tiny("digits_care", f"method.framework={framework}")
    per_view, augment = build_all(cfg, digits, torch.device("cpu"))
    joint = copy.deepcopy(per_view)
    joint.passes = "joint"
    for training in (False, True):
        results = []
        for method in (per_view, joint):
            method.train(training)
            method.zero_grad(set_to_none=True)
            torch.manual_seed(1)  # MoCo's key shuffle
            parts = method.step(digits.train[:16], augment, torch.Generator().manual_seed(0))
            parts["loss"].backward()
            results.append((parts, [p.grad.clone() for p in method.encoder.parameters()]))
        (a, grads_a), (b, grads_b) = results
        if not training:
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
            for ga, gb in zip(grads_a, grads_b):
                torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-5)
        else:
            assert not torch.allclose(a["loss"], b["loss"], rtol=1e-4, atol=1e-5)


def test_joint_passes_need_views_of_one_shape(digits):
    method, _ = build_all(tiny("digits_care", "method.passes=joint"), digits, torch.device("cpu"))
    with pytest.raises(ValueError, match="one image shape"):
        method.embed_views([torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 24, 24)])
    views = [torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last) for _ in range(2)]
    seen = []
    method.encoder.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    method.embed_views(views)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("framework", ["simclr", "moco"])
def test_a_step_under_bf16_autocast_computes_its_loss_in_float32(framework, digits):
    """train.py runs method.step inside bf16 autocast on CUDA (run.amp); the CPU's bf16
    autocast stands in: the encoder runs in bf16, the loss parts come out in float32."""
    method, augment = build_all(tiny("digits_care", f"method.framework={framework}"), digits, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = method.step(digits.train[:16], augment, torch.Generator().manual_seed(0))
    assert all(v.dtype == torch.float32 for v in parts.values())
    torch.testing.assert_close(parts["loss"], parts["info_nce"] + method.lam * parts["equivariance"])


def test_run_compile_augment_compiles_the_augmentation_on_cuda_only(digits, monkeypatch):
    calls = []
    monkeypatch.setattr("vision_benchmarks.augment.BatchAugment.compile", lambda self, **kw: calls.append(kw))
    build_all(tiny("digits_care"), digits, torch.device("cpu"))  # on by default, but a CPU run stays eager
    assert calls == []
    assert compiles_augment(tiny("digits_care"), torch.device("cuda"))
    assert compiles_augment(tiny("digits_care"), "cuda:1")
    assert not compiles_augment(tiny("digits_care", "run.compile_augment=false"), torch.device("cuda"))
    monkeypatch.setattr("vision_benchmarks.train.compiles_augment", lambda cfg, device: True)
    build_all(tiny("digits_care"), digits, torch.device("cpu"))
    assert calls == [{}]


def test_equivariance_batch_size_limits_the_extra_passes(digits):
    cfg = tiny("digits_care", "method.equiv_batch_size=8", "method.n_split=2")
    method, augment = build_all(cfg, digits, torch.device("cpu"))
    sizes = []
    method.encoder.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    method.step(digits.train[:16], augment, torch.Generator().manual_seed(0))
    assert sizes == [16, 16, 8, 8]


def test_moco_updates_the_key_encoder_by_momentum_and_enqueues_the_keys(digits):
    cfg = tiny("digits_care", "method.framework=moco", "method.loss=simclr", "moco.momentum=0.9")
    method, augment = build_all(cfg, digits, torch.device("cpu"))
    assert isinstance(method, MoCo)
    with torch.no_grad():  # make the encoders differ
        for p in method.encoder.parameters():
            p.add_(0.1)
    q_before = [p.detach().clone() for p in method.encoder.parameters()]
    k_before = [p.detach().clone() for p in method.key_encoder.parameters()]
    queue_before = method.queue.clone()
    method.step(digits.train[:16], augment, torch.Generator().manual_seed(0))
    for q, k, k_new in zip(q_before, k_before, method.key_encoder.parameters()):
        torch.testing.assert_close(k_new, 0.9 * k + 0.1 * q)
    assert not any(p.requires_grad for p in method.key_encoder.parameters())
    assert int(method.queue_ptr) == 16
    assert not torch.allclose(method.queue[:16], queue_before[:16])
    torch.testing.assert_close(method.queue[16:], queue_before[16:])
    torch.testing.assert_close(method.queue.norm(dim=1), torch.ones(32))


def test_cosine_schedule_matches_the_release_formula():
    # release: lr·step/warmup during warm-up, then 0.5·(1 + cos(π·(step−warmup)/(max−warmup)))
    total, warm = 100, 10
    for step in (0, 5, 10, 40, 99):
        expected = step / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        assert lr_factor("cosine", step / total, warmup=warm / total) == pytest.approx(expected)
    # release imagenet100 (MoCo's adjust_learning_rate): lr·0.5·(1 + cos(π·epoch/epochs)), once per epoch
    for epoch, progress in ((0, 0.004), (100, 0.5), (100, 0.504), (199, 0.999)):
        expected = 0.5 * (1 + math.cos(math.pi * epoch / 200))
        assert lr_factor("cosine-epoch", progress, epoch=epoch, epochs=200) == pytest.approx(expected)
    with pytest.raises(ValueError, match="cosine-epoch schedule needs the number of epochs"):
        lr_factor("cosine-epoch", 0.5, epoch=3)
    assert lr_factor("step", 0.0, milestones=[30, 40], epoch=35) == pytest.approx(0.1)
    assert lr_factor("constant", 0.7) == 1.0


def test_pretrain_writes_results_config_and_a_weights_only_checkpoint(tmp_path, digits):
    results = pretrain(tiny("digits_care"), tmp_path / "run", data=digits)
    for key in ("knn_top1", "knn_top1_random_init", "timings", "config"):
        assert key in results
    assert 0 <= results["knn_top1"] <= 100 and 0 <= results["knn_top1_random_init"] <= 100
    assert results["method"] == "care" and results["dataset"] == "digits" and results["epochs"] == 1
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["knn_top1"] == results["knn_top1"]
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 1 and "model" in ckpt and "optimizer" in ckpt
    assert not list((tmp_path / "run").glob(".*tmp"))
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert "knn_top1_random_init" in json.loads(lines[0]) and "equivariance" in json.loads(lines[-1])


@pytest.mark.parametrize("framework", ["simclr", "moco"])  # MoCo: its key shuffle is part of the saved state
def test_resuming_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, digits, framework):
    straight = tiny("digits_care", "optim.epochs=2", f"method.framework={framework}")
    pretrain(straight, tmp_path / "straight", data=digits)
    torch.manual_seed(12345)  # a resumed process starts with other global RNG states
    pretrain(tiny("digits_care", "optim.epochs=1", f"method.framework={framework}"), tmp_path / "resumed", data=digits)
    torch.manual_seed(678)
    results = pretrain(tiny("digits_care", "optim.epochs=2", f"method.framework={framework}"), tmp_path / "resumed",
                       data=digits)
    assert results["epochs"] == 2 and len(results["history"]) == 2
    a = load_checkpoint(tmp_path / "straight")["model"]
    b = load_checkpoint(tmp_path / "resumed")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_extending_is_refused_where_it_would_restart_the_cosine_schedule_or_undo_epochs(tmp_path, digits):
    pretrain(tiny("digits_care", "optim.schedule=cosine"), tmp_path / "cosine", data=digits)
    with pytest.raises(ValueError, match=r"optim.epochs 1 -> 2 would restart its cosine"):
        pretrain(tiny("digits_care", "optim.schedule=cosine", "optim.epochs=2"), tmp_path / "cosine", data=digits)
    pretrain(tiny("digits_care", "optim.schedule=cosine-epoch"), tmp_path / "cosine-epoch", data=digits)
    with pytest.raises(ValueError, match=r"optim.epochs 1 -> 3 would restart its cosine"):
        pretrain(tiny("digits_care", "optim.schedule=cosine-epoch", "optim.epochs=3"), tmp_path / "cosine-epoch",
                 data=digits)
    pretrain(tiny("digits_care", "optim.epochs=2"), tmp_path / "constant", data=digits)
    with pytest.raises(ValueError, match="has trained 2 epochs; optim.epochs=1 cannot undo them"):
        pretrain(tiny("digits_care", "optim.epochs=1"), tmp_path / "constant", data=digits)


def test_a_generator_state_from_another_kind_of_device_is_reseeded_with_a_note(tmp_path, digits, capsys):
    pretrain(tiny("digits_care"), tmp_path / "run", data=digits)
    ckpt = load_checkpoint(tmp_path / "run")
    cuda_like = torch.zeros(16, dtype=torch.uint8)  # a CUDA (Philox) generator's state: seed and offset
    ckpt["augment_state"], ckpt["augment_states"] = cuda_like, [cuda_like]
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    results = pretrain(tiny("digits_care", "optim.epochs=2"), tmp_path / "run", data=digits)
    assert results["epochs"] == 2
    assert "reseeded it from run.seed and the epoch" in capsys.readouterr().err


def test_a_resumed_run_logs_each_epoch_once(tmp_path, digits):
    run = tmp_path / "run"
    pretrain(tiny("digits_care", "run.log_every=1"), run, data=digits)
    log = run / "metrics.jsonl"
    before = log.read_text()
    with open(log, "a") as f:  # what a run killed in its second epoch, before its checkpoint, leaves
        f.write(json.dumps({"epoch": 2, "step": 3, "loss": 9.0}) + "\n" + '{"epoch": 2, "st')
    pretrain(tiny("digits_care", "run.log_every=1", "optim.epochs=2"), run, data=digits)
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line whole
    assert log.read_text().startswith(before) and 9.0 not in [r.get("loss") for r in records]
    steps = [r["step"] for r in records if "step" in r]
    assert len(steps) == len(set(steps))
    assert [r["epoch"] for r in records if "seconds" in r and "step" not in r] == [0, 1, 2]  # random init, 2 epochs


def test_a_damaged_generator_state_is_an_error_not_a_reseed(tmp_path, digits):
    pretrain(tiny("digits_care"), tmp_path / "run", data=digits)
    ckpt = load_checkpoint(tmp_path / "run")
    damaged = torch.zeros_like(ckpt["augment_state"])  # the CPU state's size, but no valid Mersenne Twister state
    ckpt["augment_state"], ckpt["augment_states"] = damaged, [damaged]
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    with pytest.raises(ValueError, match=r"checkpoint.pt: its augmentation generator state cannot be restored"):
        pretrain(tiny("digits_care", "optim.epochs=2"), tmp_path / "run", data=digits)


def test_resuming_with_another_config_is_refused(tmp_path, digits):
    pretrain(tiny("digits_care"), tmp_path / "run", data=digits)
    with pytest.raises(ValueError, match="method.lam"):
        pretrain(tiny("digits_care", "method.lam=0.5"), tmp_path / "run", data=digits)


def test_sync_bn_in_one_process_says_it_does_nothing_and_training_moves_every_weight_tensor(tmp_path, digits, capsys):
    results = pretrain(tiny("digits_care", "run.sync_bn=true", "run.snapshot_every=1"), tmp_path / "run", data=digits)
    assert "run.sync_bn = true has no effect in a single process" in capsys.readouterr().err
    assert results["epochs"] == 1
    init = torch.load(tmp_path / "run" / "snapshots" / "epoch_0000.pt", weights_only=True)["encoder"]
    trained = torch.load(tmp_path / "run" / "snapshots" / "epoch_0001.pt", weights_only=True)["encoder"]
    moved = [k for k in init if init[k].is_floating_point() and not torch.equal(init[k], trained[k])]
    floating = [k for k in init if init[k].is_floating_point()]
    assert moved == floating  # every parameter and running statistic changed in training


def test_a_checkpoint_not_written_by_pretrain_is_refused_naming_it(tmp_path, digits):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {}, "optimizer": {}, "step": 3, "epoch": 0}, run / CHECKPOINT)  # protein-care's keys
    with pytest.raises(ValueError, match=f"{run / CHECKPOINT} was not written by vision-benchmarks pretrain"):
        pretrain(tiny("digits_care"), run, data=digits)
    with pytest.raises(ValueError, match="was not written by vision-benchmarks pretrain"):
        load_checkpoint(run)
    (run / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{run / CHECKPOINT} is not a readable checkpoint"):
        load_checkpoint(run)

"""Data-parallel pretraining: ``vision-benchmarks pretrain`` under torchrun with 2 gloo ranks
on 127.0.0.1 (per-view and joint encoder passes) keeps the ranks' parameters identical,
each rank's loss equals a one-process computation on the same rank-local batch and
augmentation parameters, the update equals one-process Adam on the averaged gradients, the
shards follow DistributedSampler, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import BatchSampler, DistributedSampler

from vision_benchmarks.config import load_config
from vision_benchmarks.distributed import convert_sync_batchnorm, local_sizes, shard_batches
from vision_benchmarks.evaluate import make_optimizer
from vision_benchmarks.train import CHECKPOINT, build_all, load_checkpoint, load_data, pretrain

REPO = Path(__file__).parents[2]
TINY = ["run.device=cpu", "run.progress=false", "run.channels_last=false", "run.threads=1", "run.log_every=1",
        "model.width=4", "data.train_subset=64", "data.test_subset=24", "optim.batch_size=16", "optim.epochs=1",
        "method.n_split=4", "method.equiv_batch_size=0", "knn.k=5", "moco.queue_size=64", "moco.key_bn_splits=2"]


def test_shards_are_distributed_sampler_batches_and_disjoint():
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    for world in (1, 2, 3):
        shards = [shard_batches(order, 8, r, world) for r in range(world)]
        for rank, shard in enumerate(shards):
            sampler = DistributedSampler(order.tolist(), num_replicas=world, rank=rank, shuffle=False, drop_last=True)
            expected = [[order.tolist()[i] for i in b] for b in BatchSampler(sampler, 8, drop_last=True)]
            assert shard.tolist() == expected
        seen = torch.cat([s.flatten() for s in shards])
        assert seen.unique().numel() == seen.numel()  # disjoint
    assert torch.equal(shard_batches(order, 8).flatten(), order[:96])  # one process: consecutive batches


def test_global_batch_and_chunks_are_split_over_the_ranks():
    cfg = load_config("cifar10_care")  # batch 256, n_split 16 → chunks of 16 images
    assert local_sizes(cfg, 4) == {"batch_size": 64, "equiv_batch_size": 0, "n_split": 4}
    with pytest.raises(ValueError, match="optim.batch_size=256 is not divisible by the 3 processes"):
        local_sizes(cfg, 3)
    with pytest.raises(ValueError, match="method.n_split=16 is not divisible by the 32"):
        local_sizes(cfg, 32)


def _torchrun(tmp_path: Path, config: str, *extra: str) -> tuple[Path, list[dict]]:
    run, traces = tmp_path / "run", tmp_path / "traces"
    traces.mkdir()
    sets = [a for v in [*TINY, *extra] for a in ("--set", v)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "TORCHELASTIC_ERROR_FILE": str(tmp_path / "error.json")}
    # c10d rendezvous on port 0: the agent binds a free port itself and keeps it (picking a
    # free port here and passing its number would race with other processes on the host)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
           "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", str(Path(__file__).with_name("ddp_worker.py")),
           str(traces), "pretrain", "--config", config, "--out", str(run), *sets]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run, [torch.load(traces / f"trace_rank{r}.pt", weights_only=False) for r in range(2)]


def _params(method_state: dict, method) -> dict:
    names = {name for name, _ in method.named_parameters()}
    return {k: v for k, v in method_state.items() if k in names}


@pytest.mark.slow
@pytest.mark.parametrize(("framework", "passes"), [("simclr", "per-view"), ("moco", "per-view"), ("simclr", "joint")])
def test_two_gloo_ranks_match_one_process_exactly(tmp_path, framework, passes):
    extra = [f"method.framework={framework}", f"method.passes={passes}"]
    run, traces = _torchrun(tmp_path, "digits_care", *extra)
    cfg = load_config("digits_care", [*TINY, *extra])
    data = load_data(cfg)
    method, augment = build_all(cfg, data, torch.device("cpu"), world_size=2)

    # 64 images / 2 ranks / 8 per rank = 4 steps; rank r's batches are its DistributedSampler shard
    order = torch.randperm(64, generator=torch.Generator().manual_seed(cfg["run"]["seed"]))
    for rank, trace in enumerate(traces):
        assert len(trace["steps"]) == 4
        for k, batch in enumerate(shard_batches(order, 8, rank, 2)):
            assert torch.equal(trace["steps"][k]["x"], data.train[batch])

    # parameters identical across ranks before every step and after the last
    for k in range(4):
        a, b = (_params(t["steps"][k]["state"], method) for t in traces)
        assert all(torch.equal(a[n], b[n]) for n in a), f"ranks differ before step {k}"
        if framework == "moco":  # the queue takes both ranks' keys, so it is the same everywhere
            states = [t["steps"][k]["state"] for t in traces]
            assert torch.equal(states[0]["queue"], states[1]["queue"]) and int(states[0]["queue_ptr"]) == 16 * k
    final = [_params(t["final"], method) for t in traces]
    assert all(torch.equal(final[0][n], final[1][n]) for n in final[0])
    saved = load_checkpoint(run)
    assert all(torch.equal(saved["model"][n], final[0][n]) for n in final[0])

    # every rank-local loss part equals a one-process step on the same batch and parameters
    for trace in traces:
        for record in trace["steps"]:
            method.load_state_dict(record["state"])
            torch.set_rng_state(record["rng_state"])
            parts = method.step(record["x"], augment, torch.Generator().set_state(record["augment_state"]))
            assert parts.keys() == record["parts"].keys()
            for name, value in parts.items():
                assert torch.equal(value.detach(), record["parts"][name]), name

    # the first update is one-process Adam on the mean of the two ranks' gradients
    o = cfg["optim"]
    grads = []
    for trace in traces:
        record = trace["steps"][0]
        method.load_state_dict(record["state"])
        method.zero_grad(set_to_none=True)
        torch.set_rng_state(record["rng_state"])
        method.step(record["x"], augment, torch.Generator().set_state(record["augment_state"]))["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None})
    method.load_state_dict(traces[0]["steps"][0]["state"])
    optimizer = make_optimizer(o["optimizer"], method.trainable_parameters(), lr=o["lr"],
                               weight_decay=o["weight_decay"], momentum=o["momentum"])
    for n, p in method.named_parameters():
        if n in grads[0]:
            p.grad = (grads[0][n] + grads[1][n]) / 2
    optimizer.step()
    after = _params(traces[0]["steps"][1]["state"], method)
    for n, p in method.encoder.named_parameters(prefix="encoder"):
        torch.testing.assert_close(p.detach(), after[n], rtol=0, atol=1e-7, msg=n)

    # rank 0 alone wrote the run: one line per step and epoch, a 2-rank checkpoint
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line.get("step") for line in lines if "step" in line] == [0, 1, 2, 3]
    assert sum("knn_top1_random_init" in line for line in lines) == 1
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["augment_states"]) == 2
    results = json.loads((run / "results.json").read_text())
    assert results["timings"]["world_size"] == 2 and results["epochs"] == 1
    assert results["config"]["method"]["passes"] == passes  # the losses above tell joint from per-view passes
    assert not list(run.glob(".*tmp"))
    with pytest.raises(ValueError, match="trained by 2 process"):  # resuming needs the same world size
        pretrain(cfg, run, data=data)


def test_sync_batchnorm_replaces_every_batchnorm_and_needs_cuda():
    from vision_benchmarks.models import build_encoder

    encoder = build_encoder("resnet18", width=4)
    with pytest.raises(ValueError, match="needs CUDA"):
        convert_sync_batchnorm(encoder, torch.device("cpu"))
    converted = convert_sync_batchnorm(encoder, torch.device("cuda", 0))  # builds modules only
    kinds = {type(m) for m in converted.modules()}
    assert torch.nn.SyncBatchNorm in kinds and not kinds & {torch.nn.BatchNorm1d, torch.nn.BatchNorm2d}

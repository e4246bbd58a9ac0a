"""The training data path and the trainer on each device: the same behaviour on the CPU
(run everywhere) and on CUDA (run where a GPU is present, e.g. by
``benchmarks/gpu_checks.sh tests``), plus CUDA-against-CPU comparisons."""

import pytest
import torch

from protein_care.augment import center_and_scale, centroids, rotate_points
from protein_care.geometry import solve_wahba
from protein_care.runs import load_run, read_metrics
from protein_care.training import Trainer, train
from protein_care.training.checkpoint import load_checkpoint
from protein_care.training.data import PackedClouds
from protein_care.training.views import StackedViews, split_steps, step_view_kinds, stacked_views

from .synthetic_store import SyntheticStore

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])
DEVICES = ["cpu", CUDA]

TINY = {"hidden": 16, "dim": 8, "phi_layers": 1, "rho_layers": 1, "batch_size": 8, "n_split": 2, "epochs": 2,
        "log_every": 1, "checkpoint_every": 2, "progress": False}


@pytest.fixture(scope="module")
def store():
    return SyntheticStore(30)  # 24 clouds in "train": 3 steps per epoch at batch 8


def pairwise(p):
    return (p[:, None] - p[None, :]).norm(dim=-1)  # exact zeros on the diagonal, unlike cdist


@pytest.mark.parametrize("device", DEVICES)
def test_gather_then_the_split_embeddings_views_on_the_device(store, device):
    packed = PackedClouds.from_store(store).to(device)
    idx = torch.tensor([3, 0, 7, 11, 5, 2, 9, 1])
    pos, x, batch = packed.gather(idx)
    assert pos.device.type == batch.device.type == device and x.device.type == device
    b = idx.numel()
    kinds = step_view_kinds("points", equivariance=True, split=True)  # rotation ×2, points ×2, chunk ×2
    g = torch.Generator(device=device).manual_seed(0)
    stacked = stacked_views(pos, x, batch, b, kinds, length_scale=5.0, n_split=2, generator=g)
    assert stacked.pos.device.type == device and stacked.num_graphs == len(kinds) * b
    centred = center_and_scale(pos, batch, b, 5.0)
    views = stacked.views()
    for kind, view in zip(kinds, views):
        torch.testing.assert_close(centroids(view.pos, view.batch, b), torch.zeros(b, 3, device=device),
                                   atol=1e-5, rtol=0)
        if kind == "points":
            continue
        for k in range(b):  # each rotated view: the centred cloud turned rigidly about its centroid
            before, after = centred[batch == k], view.pos[view.batch == k]
            torch.testing.assert_close(pairwise(after), pairwise(before), atol=1e-4, rtol=1e-4)
    for view in views[4:]:  # the chunk views: one rotation for the clouds of a chunk (4 per chunk here)
        r = [solve_wahba(centred[batch == k].double(), view.pos[view.batch == k].double()) for k in range(b)]
        torch.testing.assert_close(r[1], r[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(r[7], r[4], atol=1e-4, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_a_window_of_steps_splits_the_same_on_the_device_as_on_the_cpu(store, device):
    packed = PackedClouds.from_store(store)
    pos, x, batch = packed.gather(torch.arange(16))  # two steps of 8 clouds
    kinds = step_view_kinds("rotation", equivariance=True, split=False)
    stacked = stacked_views(pos, x, batch, 16, kinds, length_scale=5.0, n_split=4, generator=torch.Generator().manual_seed(0))
    moved = StackedViews(stacked.pos.to(device), stacked.x.to(device), stacked.batch.to(device), *stacked[3:])
    for cpu, here in zip(split_steps(stacked, 2), split_steps(moved, 2)):
        assert here.pos.device.type == device and here.num_graphs == cpu.num_graphs == 32
        for a, b in zip(cpu[:3], here[:3]):
            assert torch.equal(b.cpu(), a)  # a stable sort and slices: exact


@pytest.mark.parametrize("device", DEVICES)
def test_training_on_the_device_logs_finite_losses_and_writes_a_cpu_loadable_checkpoint(store, tmp_path, device):
    summary = train({**TINY, "loss": "care", "device": device, "out": str(tmp_path / "run")}, store=store)
    assert summary["completed"] and summary["step"] == 6
    for record in read_metrics(tmp_path / "run"):
        assert all(torch.isfinite(torch.tensor(record[k])) for k in ("loss", "alignment", "uniformity", "equivariance"))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")  # map_location="cpu", weights_only=True
    assert all(t.device.type == "cpu" for t in state["model"].values())
    trainer = Trainer({**TINY, "device": device, "out": None}, store=store)
    assert next(trainer.model.parameters()).device.type == device
    assert trainer.amp == (device == "cuda")  # bf16 autocast on CUDA by default


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_run_stopped_and_resumed_on_cuda_ends_near_the_uninterrupted_one(store, tmp_path):
    config = {**TINY, "loss": "care", "device": "cuda", "amp": False}
    train({**config, "out": str(tmp_path / "straight")}, store=store)
    assert not train({**config, "out": str(tmp_path / "broken")}, store=store, stop_at_step=4)["completed"]
    assert train({**config, "out": str(tmp_path / "broken"), "resume": True}, store=store)["completed"]
    a, b = (torch.cat([p.detach().flatten().cpu() for p in load_run(tmp_path / name).encoder.parameters()])
            for name in ("straight", "broken"))
    # bit-identical on the CPU (test_training.py); CUDA's atomic scatter sums are not
    # deterministic, so here within float noise
    torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gather_and_rotation_equal_the_cpus(store):
    packed = PackedClouds.from_store(store)
    idx = torch.tensor([4, 4, 0, 13, 8])
    for cpu, gpu in zip(packed.gather(idx), packed.to("cuda").gather(idx)):
        assert torch.equal(gpu.cpu(), cpu)  # indexing and copies: exact
    g = torch.Generator().manual_seed(1)
    rot = torch.linalg.qr(torch.randn(1000, 3, 3, generator=g))[0]
    pts = torch.randn(1000, 3, generator=g)
    torch.testing.assert_close(rotate_points(rot.cuda(), pts.cuda()).cpu(), rotate_points(rot, pts), atol=1e-6, rtol=1e-6)

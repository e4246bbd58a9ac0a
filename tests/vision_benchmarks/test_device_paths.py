"""The batched augmentation on each device: the same behaviour on the CPU (run
everywhere) and on CUDA (where a GPU is present, e.g. ``benchmarks/gpu_checks.sh tests``),
and CUDA's sync-free pass against the CPU's for the same parameters."""

import pytest
import torch

from vision_benchmarks.augment import AugmentConfig, BatchAugment, apply_params, sample_params

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])


def images(n=64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8).to(device)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_step_views_on_the_device_share_parameters_within_each_chunk(device):
    config = AugmentConfig()
    aug = BatchAugment(config)
    x = images(64, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    v1, v2, e1, e2 = aug.step_views(x, g, n_split=8)
    for v in (v1, v2, e1, e2):
        assert v.shape == (64, 3, 32, 32) and v.dtype == torch.float32 and v.device.type == device
        assert bool(torch.isfinite(v).all())
    assert not torch.equal(v1, v2) and not torch.equal(e1, e2)
    # an equivariance view applies one parameter set per chunk of 8: a chunk of copies of
    # one image gives 8 equal views there, while the invariance views differ per image
    same = x[:1].expand(64, -1, -1, -1).contiguous()
    w1, _, f1, _ = aug.step_views(same, torch.Generator(device=device).manual_seed(1), n_split=8)
    for chunk in f1.view(8, 8, 3, 32, 32):
        torch.testing.assert_close(chunk, chunk[:1].expand_as(chunk), atol=1e-5, rtol=0)
    assert not torch.allclose(w1[0], w1[1], atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sync_free", [True, False])
def test_cuda_pass_equals_the_cpus_for_the_same_parameters(sync_free):
    config = AugmentConfig()
    x = images(128, seed=2)
    params = sample_params(128, 32, 32, config, torch.Generator().manual_seed(3))
    cpu = apply_params(x, params, config, sync_free=sync_free)
    gpu = apply_params(x.cuda(), params._map(lambda t: t.cuda()), config, sync_free=sync_free)
    # float rounding differs between the devices' kernels (and TF32 matrix products, if a
    # process enabled them); a wrong op or parameter would differ by ~0.1 or more
    torch.testing.assert_close(gpu.cpu(), cpu, atol=3e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_command_on_cuda_pretrain_probe_evaluate_report(tmp_path, capsys, flowers_root):
    """The CLI round trip of test_cli.py with run.device=cuda: bf16, channels_last and the
    compiled augmentation (on by default on CUDA) in a real pretraining run, extended by
    a resumed epoch; ``evaluate`` with the Flowers-102 retrieval."""
    import json

    from vision_benchmarks.cli import main

    tiny = ["run.device=cuda", "run.progress=false", "model.width=8", "data.train_subset=256", "data.test_subset=64",
            "optim.batch_size=64", "optim.epochs=2", "method.n_split=4", "method.equiv_batch_size=0", "knn.k=5"]
    sets = [arg for v in tiny for arg in ("--set", v)]
    run = tmp_path / "digits_care"
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *sets]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["run"]["compile_augment"] and 0 <= results["knn_top1"] <= 100
    # resuming on CUDA: the checkpoint's generator states go back as they were saved
    capsys.readouterr()
    assert main(["pretrain", "--config", "digits_care", "--out", str(run), *sets, "--set", "optim.epochs=3"]) == 0
    assert json.loads((run / "results.json").read_text())["epochs"] == 3
    assert "reseeded" not in capsys.readouterr().err
    assert main(["linear-probe", str(run), "--set", "probe.epochs=2", "--set", "probe.seeds=[0]"]) == 0
    assert main(["evaluate", str(run), "--set", "knn.k=3", "--set", f"measure.flowers_root={json.dumps(str(flowers_root))}",
                 "--set", "measure.flowers_queries=2"]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["flowers"]["gallery_size"] == 8 and evaluation["summary"]["n"] > 0
    results = json.loads((run / "results.json").read_text())
    assert results["linear_probe_top1"]["per_seed"] and 0 <= results["linear_probe_top1"]["mean"] <= 100
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert "digits" in capsys.readouterr().out


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_device_busy_time_is_the_kernels_share_of_each_call(device):
    """``benchmarks/_ops.py: device_busy_ms`` (the benchmarks' "GPU busy" column): None
    off CUDA; on CUDA, a call that is mostly matrix products keeps the GPU busy for most
    of its wall time, and one that also sleeps on the host for 50 ms for less than that."""
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from _ops import device_busy_ms

    x = torch.randn(2048, 2048, device=device)

    def busy():
        for _ in range(20):
            x @ x
        if device == "cuda":
            torch.cuda.synchronize()

    def idle():
        busy()
        time.sleep(0.05)

    if device == "cpu":
        assert device_busy_ms(busy, torch.device("cpu")) is None
        return
    busy()  # cuBLAS set-up
    t0 = time.perf_counter()
    busy()
    wall_ms = (time.perf_counter() - t0) * 1e3
    busy_ms = device_busy_ms(busy, torch.device("cuda"))
    assert 0.5 * wall_ms < busy_ms <= 1.1 * wall_ms + 0.1
    assert device_busy_ms(idle, torch.device("cuda")) < busy_ms + 50 * 0.5

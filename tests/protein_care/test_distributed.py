"""DistributedDataParallel on CPU: two gloo processes on loopback stay in sync."""

import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp

from .synthetic_store import SyntheticStore

CONFIG = {"hidden": 16, "dim": 8, "phi_layers": 1, "rho_layers": 1, "batch_size": 8, "n_split": 2, "epochs": 2,
          "device": "cpu", "log_every": 1, "checkpoint_every": 100, "progress": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_on_a_free_port(fn, world_size: int, *args, tries: int = 3) -> None:
    """``mp.spawn(fn, (world_size, port, *args))``; the port is free when chosen but may be
    taken by another process before rank 0 binds it: then again on another port."""
    for attempt in range(tries):
        try:
            mp.spawn(fn, args=(world_size, free_port(), *args), nprocs=world_size, join=True)
            return
        except mp.ProcessRaisedException as exc:
            text = str(exc)
            if attempt == tries - 1 or not ("EADDRINUSE" in text or "address already in use" in text.lower()):
                raise


def worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    from protein_care.training import distributed
    from protein_care.training.trainer import Trainer

    ctx = distributed.setup("cpu")
    try:
        seen = []
        trainer = Trainer({**CONFIG, "out": out}, store=SyntheticStore(40), ctx=ctx)
        make_window_views = trainer.make_window_views

        def spy(batches, first_step):
            seen.extend(batches.clone())
            return make_window_views(batches, first_step)

        trainer.make_window_views = spy
        trainer.run(out)
        torch.save({"state": trainer.model.state_dict(), "seen": torch.stack(seen), "config": trainer.config},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        distributed.teardown(ctx)


@pytest.mark.slow
def test_two_gloo_ranks_keep_identical_parameters_on_disjoint_shards(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    spawn_on_a_free_port(worker, 2, out)
    r0 = torch.load(os.path.join(out, "rank0.pt"), weights_only=False)
    r1 = torch.load(os.path.join(out, "rank1.pt"), weights_only=False)
    # 32 training clouds / 2 ranks / batch 8 = 2 steps per epoch, 2 epochs
    assert r0["config"]["world_size"] == 2 and r0["config"]["total_steps"] == 4
    assert r0["seen"].shape == r1["seen"].shape == (4, 8)
    for epoch in range(2):  # each epoch the ranks take disjoint shards
        a, b = r0["seen"][2 * epoch : 2 * epoch + 2], r1["seen"][2 * epoch : 2 * epoch + 2]
        assert not set(a.flatten().tolist()) & set(b.flatten().tolist())
    for name, value in r0["state"].items():  # parameters and BatchNorm statistics
        assert torch.equal(value, r1["state"][name]), name
    from protein_care.runs import initial_encoder, load_run

    run = load_run(out)  # rank 0 wrote the run folder
    start = initial_encoder(run.config).state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in r0["state"].items() if v.is_floating_point())
    assert all(torch.equal(v, run.encoder.state_dict()[k]) for k, v in r0["state"].items())


def test_teardown_meets_the_other_ranks_only_on_a_clean_exit(monkeypatch):
    import protein_care.distributed as pd

    calls = []
    monkeypatch.setattr(pd.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(pd.dist, "barrier", lambda *a, **k: calls.append("barrier"))
    monkeypatch.setattr(pd.dist, "destroy_process_group", lambda: calls.append("destroy"))
    ctx = pd.DistContext(rank=0, world_size=2, device=torch.device("cpu"), owner=True)
    pd.teardown(ctx)
    assert calls == ["barrier", "destroy"]
    calls.clear()
    with pytest.raises(RuntimeError):
        try:
            raise RuntimeError("a rank failed")
        finally:  # another rank may never reach a barrier: do not wait for it
            pd.teardown(ctx)
    assert calls == ["destroy"]


def _join_and_leave(rank: int, world_size: int, port: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_spawning_moves_to_another_port_when_the_chosen_one_is_taken(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], free_port()])
        chosen = []
        monkeypatch.setattr(sys.modules[__name__], "free_port", lambda: chosen.append(next(ports)) or chosen[-1])
        spawn_on_a_free_port(_join_and_leave, 2)
    assert len(chosen) == 2  # the taken port failed with EADDRINUSE, the second one worked

"""A run's folder across kills and resumes: snapshots survive a kill between the
snapshot and checkpoint writes, killed writers' temporaries are cleaned (a live writer's
kept), and runs saved before a setting existed resume, with mismatches shown as values."""

import json
import os
import subprocess
import sys

import pytest
import torch

from protein_care.runs import list_snapshots, snapshot_path
from protein_care.training import train
from protein_care.training import trainer as trainer_module
from protein_care.training.checkpoint import load_checkpoint

from .synthetic_store import SyntheticStore

# 24 train clouds, batch 8: 3 steps per epoch, 9 steps; snapshots at 2, 4, 7, 9
TINY = {"hidden": 16, "dim": 8, "phi_layers": 1, "rho_layers": 1, "batch_size": 8, "n_split": 2, "epochs": 3,
        "device": "cpu", "log_every": 2, "checkpoint_every": 3, "progress": False}
SNAPSHOTS = [2, 4, 7, 9]


@pytest.fixture(scope="module")
def store():
    return SyntheticStore(30)


@pytest.fixture(scope="module")
def straight(store, tmp_path_factory):
    """An uninterrupted run, to compare snapshots with."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train({**TINY, "out": str(out)}, store=store)
    return out


def _same_weights(a, b) -> bool:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _dead_pid() -> int:
    """The ID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --------------------------------------------------------------------------- snapshots


def test_a_kill_between_the_snapshot_and_checkpoint_writes_loses_no_snapshot(store, straight, tmp_path, monkeypatch):
    """Step 4 is a snapshot step (not a checkpoint_every step): its save writes two files.
    The process dies after the first of them, whichever it is; the resumed run still has
    every snapshot, and step 4's holds the uninterrupted run's weights."""
    out = tmp_path / "run"
    real_write = trainer_module.write_torch_atomic
    written_at_4 = []

    def write_then_die(path, obj):
        if obj.get("step") == 4:
            if written_at_4:
                raise KeyboardInterrupt("killed between the two writes of step 4")
            written_at_4.append(path)
        return real_write(path, obj)

    monkeypatch.setattr(trainer_module, "write_torch_atomic", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        train({**TINY, "out": str(out)}, store=store)
    monkeypatch.setattr(trainer_module, "write_torch_atomic", real_write)
    assert len(written_at_4) == 1
    # the snapshot is written first: the folder holds it, and a checkpoint from before it
    assert snapshot_path(out, 4).is_file() and load_checkpoint(out / "checkpoint.pt")["step"] == 3
    summary = train({**TINY, "out": str(out), "resume": True}, store=store)
    assert summary["completed"]
    assert [s for s, _ in list_snapshots(out)] == SNAPSHOTS
    for step in SNAPSHOTS:
        assert _same_weights(snapshot_path(out, step), snapshot_path(straight, step)), step


def test_resume_writes_a_due_snapshot_the_checkpoint_has_but_the_folder_lost(store, straight, tmp_path):
    """A run killed under the old write order: checkpoint.pt at snapshot step 4, no
    step_4.pt. Resuming writes it from the checkpoint's weights."""
    out = tmp_path / "run"
    train({**TINY, "out": str(out)}, store=store, stop_at_step=4)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    snapshot_path(out, 4).unlink()
    train({**TINY, "out": str(out), "resume": True}, store=store)
    assert [s for s, _ in list_snapshots(out)] == SNAPSHOTS
    assert _same_weights(snapshot_path(out, 4), snapshot_path(straight, 4))
    assert load_checkpoint(snapshot_path(out, 4))["step"] == 4


def test_resume_removes_killed_writers_temporaries_and_keeps_a_live_writers(store, tmp_path):
    out = tmp_path / "run"
    train({**TINY, "out": str(out)}, store=store, stop_at_step=3)
    dead, alive = _dead_pid(), os.getpid()  # this test's process is a writer still running
    names = {
        "dead checkpoint": out / f".checkpoint.pt.{dead}.0badc0de.tmp",
        "dead config": out / f".config.json.{dead}.0badc0de.tmp",
        "dead snapshot": out / "checkpoints" / f".step_7.pt.{dead}.0badc0de.tmp",
        "live checkpoint": out / f".checkpoint.pt.{alive}.1ead1ead.tmp",
        "live snapshot": out / "checkpoints" / f".step_7.pt.{alive}.1ead1ead.tmp",
    }
    for path in names.values():
        path.write_bytes(b"partial")
    assert train({**TINY, "out": str(out), "resume": True}, store=store)["completed"]
    assert {k for k, p in names.items() if p.exists()} == {"live checkpoint", "live snapshot"}


# --------------------------------------------------------------------------- settings


def _stopped_run(store, out, **extra):
    train({**TINY, **extra, "out": str(out)}, store=store, stop_at_step=2)
    return json.loads((out / "config.json").read_text())


def test_a_run_saved_before_view_window_existed_resumes_as_one_step_windows(store, tmp_path):
    """Runs from before --view-window lack the key; they made each step's views alone,
    i.e. W = 1, which the CPU default (and --view-window 1) reproduces; another W is
    refused, naming the value the run is taken to have."""
    out = tmp_path / "run"
    saved = _stopped_run(store, out)
    assert saved["view_window"] == 1
    del saved["view_window"]
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"view_window: run=1, now=2 \(the run predates this setting\)"):
        train({**TINY, "view_window": 2, "out": str(out), "resume": True}, store=store)
    assert train({**TINY, "out": str(out), "resume": True}, store=store)["completed"]  # the CPU default: 1
    (out / "config.json").write_text(json.dumps(saved))  # the settings are compared again, with --view-window 1
    assert train({**TINY, "view_window": 1, "out": str(out), "resume": True}, store=store)["completed"]


def test_the_resume_error_shows_both_values_of_each_differing_setting(store, tmp_path):
    out = tmp_path / "run"
    _stopped_run(store, out, view_window=2)
    with pytest.raises(ValueError) as caught:
        train({**TINY, "view_window": 1, "lam": 0.5, "out": str(out), "resume": True}, store=store)
    message = str(caught.value)
    assert message.startswith(f"--resume: these settings differ from the run in {out}: ")
    assert "lam: run=0.01, now=0.5; " in message and message.endswith("view_window: run=2, now=1")

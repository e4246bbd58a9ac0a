"""`protein-care train` end to end on a few real structures, and resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from protein_care.cli import main
from protein_care.embedding import embed_clouds
from protein_care.runs import load_run, read_metrics
from protein_care.training.checkpoint import load_checkpoint
from protein_care.training.trainer import Trainer

from .synthetic_store import REPO, build_small_store, pdb_folder

pytestmark = pytest.mark.skipif(not (pdb_folder() / "BM5-clean").is_dir(), reason="real structures not found")

SMALL = ["--hidden", "32", "--dim", "16", "--phi-layers", "2", "--rho-layers", "1", "--batch-size", "8", "--n-split", "2",
         "--device", "cpu", "--no-progress", "--split", "all"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_small_store(tmp_path_factory.mktemp("store") / "bm5", n_files=30)


def test_cli_run_writes_a_loadable_run(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--store", str(store), "--out", str(out), "--max-steps", "6", "--log-every", "2", *SMALL]) == 0
    assert "finished at step 6/6" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["store_path"] == str(store.resolve()) and config["store_config_hash"]
    assert config["max_steps"] == 6 and config["loss"] == "care" and config["length_scale"] > 5
    assert config["num_residue_types"] == 21 and config["train_size"] == 30
    assert [m["step"] for m in read_metrics(out)] == [2, 4, 6]
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    assert payload["step"] == 6
    run = load_run(out)
    from data_pipeline.store import PointCloudStore

    s = PointCloudStore(store)
    coords = [s[i] for i in range(5)]
    # the same embeddings as the network that trained (rebuilt here from its own state)
    trained = Trainer({**config, "resume": True, "out": str(out)}, store=s)
    trained.load_state(payload)
    ls = config["length_scale"]
    torch.testing.assert_close(embed_clouds(run.encoder, coords, length_scale=ls), embed_clouds(trained.model, coords, length_scale=ls))


def test_cli_errors_name_the_argument(store, tmp_path, capsys):
    code = main(["train", "--store", str(store), "--out", str(tmp_path / "r"), *SMALL, "--n-split", "3"])
    assert code == 2 and "--n-split 3 must divide --batch-size 8" in capsys.readouterr().err
    code = main(["train", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *SMALL])
    assert code == 2 and "--store" in capsys.readouterr().err


def test_a_file_in_the_way_of_out_is_named(store, tmp_path, capsys):
    (tmp_path / "afile.json").write_text("{}")
    for out in (tmp_path / "afile.json", tmp_path / "afile.json" / "sub"):
        assert main(["train", "--store", str(store), "--out", str(out), "--max-steps", "2", *SMALL]) == 2
        assert f"--out {out}: a file is in the way" in capsys.readouterr().err
    assert (tmp_path / "afile.json").read_text() == "{}"


def test_a_torn_metrics_line_does_not_block_resuming(store, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--store", str(store), "--out", str(out), "--log-every", "2", "--max-steps", "8", *SMALL]
    assert main([*base, "--max-minutes", "1e-9"]) == 0  # stops (with a checkpoint) after its first step
    with open(out / "metrics.jsonl", "a") as handle:  # a writer killed in the middle of a line
        handle.write('{"step": 2, "epoch": 0.2, "lo')
    assert [m["step"] for m in read_metrics(out)] == [1]
    assert main([*base, "--resume"]) == 0
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 4, 6, 8]
    assert all(line.startswith("{") and line.endswith("}") for line in (out / "metrics.jsonl").read_text().splitlines())


def test_a_truncated_checkpoint_is_named_by_train_evaluate_plot_and_compare(store, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--store", str(store), "--out", str(out), "--max-steps", "4", *SMALL]
    assert main([*base, "--max-minutes", "1e-9"]) == 0
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
    capsys.readouterr()
    for command in ([*base, "--resume"], ["evaluate", str(out), "--device", "cpu"],
                    ["plot", str(out), "--out", str(tmp_path / "plot"), "--device", "cpu"],
                    ["compare", str(out), "--out", str(tmp_path / "compare"), "--device", "cpu"]):
        assert main(command) == 2, command[0]
        assert f"{checkpoint}: not a readable checkpoint" in capsys.readouterr().err, command[0]


def _train_command(store, out, *extra):
    return [sys.executable, "-m", "protein_care.cli", "train", "--store", str(store), "--out", str(out), *SMALL,
            "--max-steps", "40", "--epochs", "100", "--checkpoint-every", "2", "--log-every", "5", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(store, tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    reference = subprocess.Popen(_train_command(store, straight), env=_env(), cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = subprocess.Popen(_train_command(store, broken), env=_env(), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = broken / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = load_checkpoint(checkpoint)["step"]  # readable with weights_only=True
    assert 2 <= killed_at < 40
    resumed = subprocess.run(_train_command(store, broken, "--resume"), env=_env(), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-2000:]
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(broken / "checkpoint.pt")
    assert a["step"] == b["step"] == 40
    for name, value in a["model"].items():
        assert torch.allclose(value.double(), b["model"][name].double(), rtol=0, atol=1e-6), name
    assert [m["step"] for m in read_metrics(broken)] == [m["step"] for m in read_metrics(straight)]

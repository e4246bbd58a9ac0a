"""``protein-care embed``: a store's clouds embedded by a trained run, in one .npz
(tiny runs on real structures, :mod:`.tiny_cli_runs`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_pipeline.store import PointCloudStore
from protein_care import embed_export, embedding
from protein_care.cli import main
from protein_care.embed_export import point_batches
from protein_care.embedding import embed_clouds
from protein_care.runs import load_run


def _load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_embed_writes_every_cloud_of_the_store_as_the_encoder_embeds_it(cli_runs, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert main(["embed", str(cli_runs.care), "--out", str(out), "--store", str(cli_runs.store),
                 "--device", "cpu", "--no-progress"]) == 0
    assert "20 clouds x 8 dims" in capsys.readouterr().out
    got = _load(out)
    store = PointCloudStore(cli_runs.store)
    assert got["ids"].tolist() == store.ids and got["indices"].tolist() == list(range(len(store)))
    assert got["embeddings"].dtype == np.float32 and got["embeddings"].shape == (len(store), 8)
    run = load_run(cli_runs.care)
    expected = embed_clouds(run.encoder, [store[i] for i in range(len(store))],
                            length_scale=run.config["length_scale"]).numpy()
    np.testing.assert_allclose(got["embeddings"], expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got["embeddings"], axis=1), 1.0, atol=1e-5)
    for name in ("train", "val", "test"):
        assert np.flatnonzero(got["splits"] == name).tolist() == store.split(name).tolist()
    meta = json.loads(str(got["meta"]))
    assert meta["selection"] == "ca" and meta["dim"] == 8 and meta["checkpoint_step"] == run.step
    assert meta["store"] == str(store.path) and meta["store_config_hash"] == store.meta["config_hash"]


def test_a_split_and_the_training_store_by_default(cli_runs, tmp_path):
    out = tmp_path / "test.npz"
    assert main(["embed", str(cli_runs.care), "--out", str(out), "--split", "test", "--device", "cpu"]) == 0
    got = _load(out)
    store = PointCloudStore(cli_runs.store)  # the run was trained on it (recorded relative to base)
    assert got["indices"].tolist() == store.split("test").tolist()
    assert set(got["splits"].tolist()) == {"test"}
    assert got["ids"].tolist() == [store.ids[i] for i in store.split("test")]


def test_batching_by_points_does_not_change_the_embeddings(cli_runs, monkeypatch):
    whole = embed_export.embed_store(cli_runs.care, cli_runs.store)
    monkeypatch.setattr(embedding, "POINT_BUDGET", 16 * 300)  # about one cloud per batch at 16 channels
    batched = embed_export.embed_store(cli_runs.care, cli_runs.store)
    np.testing.assert_allclose(batched["embeddings"], whole["embeddings"], atol=1e-6)
    assert batched["ids"].tolist() == whole["ids"].tolist()


@given(st.lists(st.integers(1, 500), max_size=60), st.integers(1, 1000), st.integers(1, 8))
def test_point_batches_cover_the_clouds_in_order_within_the_budget(sizes, budget, max_batch):
    sizes = np.array(sizes, dtype=np.int64)
    parts = point_batches(sizes, budget, max_batch)
    covered = [i for part in parts for i in range(len(sizes))[part]]
    assert covered == list(range(len(sizes)))
    for part in parts:
        chunk = sizes[part]
        assert 1 <= len(chunk) <= max_batch
        assert len(chunk) == 1 or chunk.sum() <= budget  # a cloud over the budget goes alone


def test_an_existing_file_is_kept_unless_overwrite(cli_runs, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    out.write_bytes(b"precious")
    assert main(["embed", str(cli_runs.care), "--out", str(out), "--device", "cpu"]) == 2
    assert "the file exists (pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["embed", str(cli_runs.care), "--out", str(out), "--device", "cpu", "--overwrite"]) == 0
    assert _load(out)["embeddings"].shape == (20, 8)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(cli_runs, tmp_path, monkeypatch):
    out = tmp_path / "emb.npz"
    out.write_bytes(b"old")
    result = embed_export.embed_store(cli_runs.care, cli_runs.store, split="val")

    def broken_savez(fh, **arrays):
        fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embed_export.np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space left"):
        embed_export.write_embeddings(result, out)
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["emb.npz"]


def test_a_run_of_another_atom_selection_is_embedded_with_a_warning(cli_runs, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert main(["embed", str(cli_runs.heavy), "--out", str(out), "--store", str(cli_runs.store),
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "heavy atoms" in err
    assert _load(out)["embeddings"].shape[0] == 20


@pytest.mark.parametrize("args, words", [
    (["embed", "no-such-run", "--out", "e.npz"], "no-such-run"),
    (["embed", "RUN", "--out", "e.npz", "--store", "no-such-store"], "no-such-store"),
    (["embed", "RUN", "--out", "e.npz", "--checkpoint", "step_999"], "step_999"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(cli_runs, tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    args = [str(cli_runs.care) if a == "RUN" else a for a in args]
    assert main([*args, "--device", "cpu"]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "e.npz").exists()


def test_an_empty_split_is_refused(cli_runs, tmp_path, capsys):
    store1 = PointCloudStore(cli_runs.store1)  # one cloud: two of its three splits are empty
    empty = next(name for name in ("train", "val", "test") if len(store1.split(name)) == 0)
    assert main(["embed", str(cli_runs.care), "--out", str(tmp_path / "e.npz"), "--store", str(cli_runs.store1),
                 "--split", empty, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"split {empty!r} of" in err and "has no clouds" in err
    assert not (tmp_path / "e.npz").exists()

"""``protein-care embed``: a store's clouds embedded by a trained run, in one .npz
(tiny runs on real structures, :mod:`.tiny_cli_runs`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_pipeline.store import PointCloudStore
from protein_care import embed_export, embedding
from protein_care.cli import main
from protein_care.embed_export import size_batches
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


@given(st.lists(st.integers(1, 500), max_size=60), st.integers(1, 2000), st.integers(1, 8))
def test_size_batches_cover_each_cloud_once_within_what_fits(sizes, budget, max_batch):
    sizes = np.array(sizes, dtype=np.int64)

    def fits(n):  # clouds of up to n points that fit, as clouds_per_batch answers
        return budget // n

    batches = size_batches(sizes, fits, max_batch)
    assert sorted(np.concatenate([np.zeros(0, np.int64), *batches]).tolist()) == list(range(len(sizes)))
    for batch in batches:
        largest = int(sizes[batch].max())
        assert 1 <= len(batch) <= max_batch
        assert len(batch) == 1 or len(batch) <= fits(largest)  # a cloud that fits nowhere goes alone
    flat = [int(sizes[i]) for batch in batches for i in batch]
    assert flat == sorted(flat)  # similar sizes together: little padding


def _train(cli_runs, out, *extra):
    from .tiny_cli_runs import TINY_TRAIN

    assert main(["train", "--store", str(cli_runs.store), "--out", str(out), *TINY_TRAIN, *extra]) == 0
    return out


def test_a_set_transformer_is_batched_within_its_attention_budget(cli_runs, tmp_path, monkeypatch):
    run = _train(cli_runs, tmp_path / "st", "--encoder", "set-transformer")
    whole = embed_export.embed_store(run, cli_runs.store)
    seen = []
    real = embed_export.embed_clouds

    def spy(encoder, coords, *args, **kw):
        seen.append((len(coords), max(len(c) for c in coords)))
        return real(encoder, coords, *args, **kw)

    monkeypatch.setattr(embed_export, "embed_clouds", spy)
    monkeypatch.setattr(embedding, "ATTENTION_BUDGET", 4 * 2 * 600**2)  # two clouds of 600 points per batch
    batched = embed_export.embed_store(run, cli_runs.store)
    assert len(seen) > 1 and all(n == 1 or n * largest**2 <= 2 * 600**2 for n, largest in seen), seen
    np.testing.assert_allclose(batched["embeddings"], whole["embeddings"], atol=1e-5)


def test_meta_records_absolute_paths_the_initial_weights_and_the_split_blocks(cli_runs, tmp_path, monkeypatch):
    run = _train(cli_runs, tmp_path / "split", "--embedding", "split")
    monkeypatch.chdir(tmp_path)
    result = embed_export.embed_store("split", cli_runs.store, checkpoint="init")
    meta = result["meta"]
    assert meta["run_dir"] == str(run.resolve()) and meta["checkpoint"] == "init" and meta["checkpoint_step"] == 0
    assert meta["embedding"] == "split" and meta["blocks"]["invariant"] == [0, 4] and meta["blocks"]["equivariant"] == [4, 8]
    weight = meta["blocks"]["scale"]["equivariant"] ** 2
    z = result["embeddings"]  # each block is a unit vector scaled by its weight
    np.testing.assert_allclose(np.linalg.norm(z[:, 4:], axis=1), weight**0.5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(z[:, :4], axis=1), (1 - weight) ** 0.5, atol=1e-5)
    assert meta["run_selection"] == "ca" == meta["selection"] and not meta["warnings"]


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
    assert "warning:" in err and "was trained on heavy atoms" in err and "holds CA atoms" in err
    assert _load(out)["embeddings"].shape[0] == 20


def test_a_run_whose_training_store_is_gone(cli_runs, tmp_path, capsys):
    run = tmp_path / "moved"
    shutil.copytree(cli_runs.heavy, run)
    config = json.loads((run / "config.json").read_text())
    config.update(store_path=str(tmp_path / "gone"), store="gone", store_config_hash="0" * 64)
    (run / "config.json").write_text(json.dumps(config))
    assert main(["embed", str(run), "--out", str(tmp_path / "e.npz"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"the training store of {run}, {tmp_path / 'gone'}" in err and "pass --store STORE" in err
    assert main(["embed", str(run), "--out", str(tmp_path / "e.npz"), "--store", str(cli_runs.store),
                 "--device", "cpu"]) == 0  # embedded, with a warning that the selection cannot be checked
    assert "its atom selection cannot be checked" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_the_work(cli_runs, tmp_path, monkeypatch, capsys):
    def no_space(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embed_export.Path, "write_bytes", no_space)
    monkeypatch.setattr(embed_export, "embed_store", lambda *a, **k: pytest.fail("the work started"))
    assert main(["embed", str(cli_runs.care), "--out", str(tmp_path / "e.npz"), "--device", "cpu"]) == 2
    assert "cannot write there (No space left on device)" in capsys.readouterr().err


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

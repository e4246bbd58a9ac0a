"""The explorer's limits without a browser: memory bounded by cloud size, uploads kept
per browser session, runs trained on another store marked, and slider marks that say
the angle of their step."""

from __future__ import annotations

import base64
import shutil

import numpy as np
import pytest

from apps.trajectory_explorer import budget, views
from protein_care import embedding
from apps.trajectory_explorer.cache import LRUCache
from apps.trajectory_explorer.data import ExplorerData, StoreLoadError
from apps.trajectory_explorer.inputs import parse_axis
from apps.trajectory_explorer.uploads import Protein, SessionUploads, new_session_id
from protein_care.trajectories import compute_trajectories


@pytest.fixture(scope="module")
def data(tiny_runs) -> ExplorerData:
    return ExplorerData.open(tiny_runs.runs, tiny_runs.store, max_upload_bytes=256 * 1024, max_points=100)


def _data_url(raw: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(raw).decode()


# --------------------------------------------------------------------------- memory


def test_an_upload_over_the_point_limit_is_refused_with_the_reason(data, tiny_runs):
    session = new_session_id()
    path = tiny_runs.pdb / "pdbtbx" / "1ubq.cif.gz"  # 76 CA atoms
    small = ExplorerData.open([tiny_runs.care], tiny_runs.store, max_points=50)
    result = views.handle_upload(small, _data_url(path.read_bytes()), path.name, session)
    assert result.error and result.protein_key is None
    assert "1ubq.cif.gz: 76 CA atoms is over the limit of 50 points per upload" in result.message
    assert "--max-points" in result.message and small.uploads(session) == []
    assert not views.handle_upload(data, _data_url(path.read_bytes()), path.name, session).error  # 100 allowed


def test_rotations_are_embedded_in_batches_within_the_point_budget(data, monkeypatch):
    """A cloud of n points is embedded at most POINT_BUDGET // (n · hidden) rotations at
    a time, and the batching does not change the trajectory."""
    pid = data.ids[5]
    n, hidden = len(data.protein(pid).coords), data.run("0").run.config["hidden"]
    monkeypatch.setattr(embedding, "POINT_BUDGET", n * hidden * 5)  # 5 rotated copies per batch
    encoder = data.run("0").run.encoder
    seen = []
    hook = encoder.register_forward_hook(lambda _m, args, _out: seen.append(args[3]))  # num_graphs
    try:
        traj = data.trajectory("0", pid, parse_axis("y"), 23)
    finally:
        hook.remove()
    assert seen == [5, 5, 5, 5, 3]
    whole = compute_trajectories(encoder, data.store, [pid], steps=23, axes=("y",),
                                 length_scale=data.run("0").length_scale, batch_size=64)
    np.testing.assert_allclose(traj.embeddings, whole.embeddings, atol=1e-5)


def test_set_transformer_budget_grows_with_the_square_of_the_points():
    config = {"encoder": "set-transformer", "heads": 4, "hidden": 16}
    assert budget.clouds_per_batch(config, 1500) == 2**26 // (4 * 1500**2)  # 7, not 256 (+4 GB)
    assert budget.largest_cloud(config) == 4096 and budget.clouds_per_batch(config, 4097) == 0
    assert budget.clouds_per_batch({"encoder": "deepset", "hidden": 64}, 20_000) == 52
    assert budget.clouds_per_batch({"encoder": "deepset", "hidden": 64, "embedding": "split"}, 20_000) == 26


def test_a_cloud_too_large_for_a_set_transformer_is_a_page_message(other_store_run, tiny_runs, monkeypatch):
    data = ExplorerData.open([tiny_runs.care, other_store_run.run], tiny_runs.store)
    sizes = {i: len(data.protein(i).coords) for i in data.ids}
    big, small = max(sizes, key=sizes.get), min(sizes, key=sizes.get)
    monkeypatch.setattr(embedding, "ATTENTION_BUDGET", 4 * sizes[small] ** 2)  # 4 heads: the smallest fits once
    v = views.render_views(data, ["0", "1"], big, "z", "", 8, 0)
    assert v.error and "a set-transformer run (its attention grows with the square of the points) can embed at " \
        f"most {sizes[small]:,} points" in v.status and f"this protein has {sizes[big]:,}" in v.status
    assert data.run("1").label.split(" ⚠")[0] in v.status and "untick the run" in v.status
    assert not views.render_views(data, ["0", "1"], small, "z", "", 8, 0).error


# --------------------------------------------------------------------------- sessions


def test_uploads_belong_to_the_browser_session_that_made_them(data, tiny_runs):
    mine, theirs = new_session_id(), new_session_id()
    path = tiny_runs.pdb / "pdbtbx" / "1ubq.cif.gz"
    key = views.handle_upload(data, _data_url(path.read_bytes()), "secret-name.cif.gz", mine).protein_key
    assert [o["value"] for o in views.protein_options(data, "", None, session=mine)][0] == key
    assert all(o["value"] != key for o in views.protein_options(data, "", None, session=theirs))
    v = views.render_views(data, ["0"], key, "z", "", 8, 0, session=theirs)
    assert v.error and "upload the file again" in v.status
    assert not views.render_views(data, ["0"], key, "z", "", 8, 0, session=mine).error
    # the same file uploaded by another tab under another name: its own label, nothing of the first
    other = views.handle_upload(data, _data_url(path.read_bytes()), "mine.cif.gz", theirs)
    v = views.render_views(data, ["0"], other.protein_key, "z", "", 8, 0, session=theirs)
    assert "mine" in v.status and "secret-name" not in str(v.traj2d.to_dict())
    for bad in (None, "", "short", "x" * 65, "../../etc"):
        result = views.handle_upload(data, _data_url(path.read_bytes()), path.name, bad)
        assert result.error and "reload the page" in result.message


def test_uploads_are_bounded_per_session_and_overall():
    uploads = SessionUploads(per_session=2, total=3)
    a, b = new_session_id(), new_session_id()
    protein = lambda k: Protein(f"upload:{k}", k, np.zeros((1, 3), np.float32), np.zeros(1, int), "upload")  # noqa: E731
    for k in "pqr":
        uploads.put(a, protein(k))
    assert [p.label for p in uploads.of(a)] == ["q", "r"]  # p, the least recently used, dropped
    uploads.get(a, "upload:q")
    uploads.put(b, protein("s"))
    uploads.put(b, protein("t"))
    assert len(uploads) == 3 and [p.label for p in uploads.of(a)] == ["q"] and uploads.get(b, "upload:q") is None
    assert [p.label for p in uploads.of(b)] == ["s", "t"]


def test_session_uploads_are_an_lru_cache_bounded_per_session_first():
    """A session over its bound drops its own least recently used upload, not another
    session's older one; the total is bounded after that."""
    uploads = SessionUploads(per_session=2, total=3)
    assert isinstance(uploads, LRUCache) and uploads.maxsize == 3
    a, b = new_session_id(), new_session_id()
    protein = lambda k: Protein(f"upload:{k}", k, np.zeros((1, 3), np.float32), np.zeros(1, int), "upload")  # noqa: E731
    uploads.put(b, protein("s"))
    for k in "qru":
        uploads.put(a, protein(k))
    assert [p.label for p in uploads.of(b)] == ["s"] and [p.label for p in uploads.of(a)] == ["r", "u"]
    uploads.put(a, protein("r"))  # again: moved to the most recent, not kept twice
    assert len(uploads) == 3 and [p.label for p in uploads.of(a)] == ["u", "r"]
    uploads.put(b, protein("t"))  # over the total: the least recent of all (s) goes
    assert [p.label for p in uploads.of(b)] == ["t"] and len(uploads) == 3


# --------------------------------------------------------------------------- stores


def test_a_run_trained_on_another_store_is_marked(other_store_run, tiny_runs):
    data = ExplorerData.open([tiny_runs.care, other_store_run.run], tiny_runs.store)
    care, other = data.run("0"), data.run("1")
    assert care.mismatch is None and "⚠" not in care.label
    assert other.label.endswith("⚠ trained on another store (heavy atoms); shown: CA")
    (mismatch,) = data.mismatches
    assert str(other_store_run.store) in mismatch.warning and str(tiny_runs.store) in mismatch.warning
    assert ExplorerData.open([other_store_run.run], other_store_run.store).mismatches == []


def test_runs_of_different_stores_need_an_explicit_store(other_store_run, tiny_runs):
    with pytest.raises(StoreLoadError) as info:
        ExplorerData.open([tiny_runs.care, other_store_run.run])
    text = str(info.value)
    assert info.value.option is None and "trained on different stores" in text and "pass --store" in text.lower()
    assert str(other_store_run.run) in text and "heavy atoms" in text


def test_a_moved_training_store_names_the_run_and_suggests_store(tiny_runs, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(tiny_runs.care, run)
    config = (run / "config.json").read_text().replace(str(tiny_runs.store), str(tmp_path / "gone"))
    (run / "config.json").write_text(config)
    with pytest.raises(StoreLoadError) as info:
        ExplorerData.open([run])
    assert info.value.option is None
    assert f"{run / 'config.json'} records the training store {tmp_path / 'gone'}" in str(info.value)
    assert "pass --store" in str(info.value)


# --------------------------------------------------------------------------- the slider


def test_slider_marks_say_the_angle_of_their_step():
    """The marks sit on the steps nearest 0, 90, 180, 270 and 360° and say those steps'
    own angles; 0° and 360° are always the first and last step."""
    expected = {
        2: {0: "0°", 1: "360°"},
        3: {0: "0°", 1: "180°", 2: "360°"},
        4: {0: "0°", 1: "120°", 2: "240°", 3: "360°"},
        7: {0: "0°", 2: "120°", 3: "180°", 5: "300°", 6: "360°"},
        64: {0: "0°", 16: "91°", 32: "183°", 47: "269°", 63: "360°"},
        65: {0: "0°", 16: "90°", 32: "180°", 48: "270°", 64: "360°"},
    }
    assert {steps: views.slider_settings(steps)[1] for steps in expected} == expected


def test_the_budget_keeps_set_transformer_memory_bounded(other_store_run):
    """An uploaded 1,500-atom cloud at 16 steps: batches of 7 copies, not all 16 at
    once (at 64 steps that took +4.4 GB)."""
    data = ExplorerData.open([other_store_run.run], other_store_run.store)
    assert budget.clouds_per_batch(data.run("0").run.config, 1500) == 7
    session = new_session_id()
    key = data.add_upload("walk.pdb", _pdb_walk(1500), session).key
    encoder, seen = data.run("0").run.encoder, []
    hook = encoder.register_forward_hook(lambda _m, args, _out: seen.append(args[3]))
    try:
        data.trajectory("0", key, parse_axis("z"), 16, session)
    finally:
        hook.remove()
    assert seen == [7, 7, 2]


def _pdb_walk(n: int) -> bytes:
    """A PDB file of ``n`` CA atoms on a random walk (one chain of ALA)."""
    pos = np.cumsum(np.random.default_rng(0).normal(size=(n, 3)) * 2.2, axis=0)
    pos -= pos.mean(axis=0)
    lines = [f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
             for i, (x, y, z) in enumerate(pos)]
    return ("\n".join(lines) + "\nEND\n").encode()

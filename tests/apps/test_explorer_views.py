"""The explorer's logic without a browser: the data service (runs, store, uploads, the
embedding cache) and the plain functions the Dash callbacks wrap."""

from __future__ import annotations

import base64
import gzip
import math
import os
import tempfile
from collections import Counter

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from apps.trajectory_explorer import views
from apps.trajectory_explorer.cache import LRUCache
from apps.trajectory_explorer.data import ExplorerData, RunLoadError, StoreLoadError
from apps.trajectory_explorer.figures import HIGHLIGHT_NAME
from apps.trajectory_explorer.inputs import ExplorerError, check_steps, parse_axis
from apps.trajectory_explorer.uploads import new_session_id
from protein_care.plotting import png_export_available
from protein_care.trajectories import compute_trajectories, project_trajectories

SESSION = new_session_id()  # the browser tab of these tests


@pytest.fixture(scope="module")
def data(tiny_runs) -> ExplorerData:
    return ExplorerData.open(tiny_runs.runs, tiny_runs.store, max_upload_bytes=256 * 1024)


def _data_url(raw: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(raw).decode()


def _upload_temporaries() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("protein-care-upload-")}


# --------------------------------------------------------------------------- values


def test_axis_names_and_custom_directions_parse_to_unit_vectors():
    assert parse_axis("y").spec == "y" and parse_axis("y").label == "y"
    a = parse_axis("custom", "1 1 0")
    assert a.spec == pytest.approx((2**-0.5, 2**-0.5, 0.0)) and a.label == "(0.707, 0.707, 0)"
    assert parse_axis("custom", "[2, 2, 0]") == a  # same direction, same cache key
    assert parse_axis("custom", "0,0,-3").spec == (0.0, 0.0, -1.0)
    for huge_or_tiny in ("1e200 1e200 0", "1e-170 1e-170 0"):  # their squares overflow or vanish
        assert parse_axis("custom", huge_or_tiny) == a


@pytest.mark.parametrize("text", ["", "1 1", "1 1 1 1", "a b c", "1 nan 0", "0 0 0", None])
def test_a_bad_custom_axis_is_a_message(text):
    with pytest.raises(ExplorerError, match="custom axis"):
        parse_axis("custom", text)


def test_steps_must_be_a_whole_number_in_range():
    assert check_steps(64) == 64 and check_steps("12") == 12 and check_steps(8.0) == 8
    for bad in (1, 721, 2.5, "x", None):
        with pytest.raises(ExplorerError, match="steps"):
            check_steps(bad)


def test_lru_cache_computes_once_and_evicts_the_least_recent():
    cache, calls = LRUCache(2), []
    compute = lambda k: cache.get_or_compute(k, lambda: calls.append(k) or k.upper())  # noqa: E731
    assert [compute("a"), compute("b"), compute("a")] == ["A", "B", "A"]
    compute("c")  # evicts b, the least recently used
    assert "a" in cache and "c" in cache and "b" not in cache
    assert calls == ["a", "b", "c"] and (cache.hits, cache.misses) == (1, 3)


# --------------------------------------------------------------------------- the data service


def test_missing_or_broken_runs_are_named(tiny_runs, tmp_path):
    with pytest.raises(RunLoadError) as info:
        ExplorerData.open([tiny_runs.care, tmp_path / "nope"], tiny_runs.store)
    assert info.value.path == str(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_runs.care / "config.json").read_text())
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunLoadError, match="broken"):
        ExplorerData.open([broken], tiny_runs.store)
    with pytest.raises(StoreLoadError, match="no store"):
        ExplorerData.open([tiny_runs.care], tmp_path / "no-store")


def test_runs_are_labelled_with_loss_and_step(data):
    assert [o["label"] for o in data.run_options()] == ["care (care, step 3)", "simclr (simclr, step 3)"]
    assert data.selection == "ca" and len(data.ids) == 20


def test_trajectories_are_the_librarys_and_are_computed_once(data, tiny_runs):
    pid = data.ids[3]
    before = data.cache.misses
    traj = data.trajectory("0", pid, parse_axis("x"), 12)
    assert traj.embeddings.shape == (1, 1, 12, 16) and traj.axes == ("x",) and traj.ids == [pid]
    direct = compute_trajectories(data.run("0").run.encoder, data.store, [pid], steps=12, axes=("x",),
                                  length_scale=data.run("0").length_scale)
    np.testing.assert_allclose(traj.embeddings, direct.embeddings, atol=1e-6)
    again = data.trajectory("0", pid, parse_axis("x"), 12)
    assert again.embeddings is traj.embeddings and data.cache.misses == before + 1  # the cached arrays
    data.trajectory("0", pid, parse_axis("x"), 13)
    data.trajectory("1", pid, parse_axis("x"), 12)
    assert data.cache.misses == before + 3  # steps and run are part of the key


def test_a_custom_axis_rotates_about_that_direction(data):
    """Turning about (0, 0, 2) is turning about z; the point cloud shown at an angle is
    the cloud rotated about its centroid (distances to the axis are kept)."""
    pid = data.ids[0]
    custom = data.trajectory("0", pid, parse_axis("custom", "0 0 2"), 10)
    named = data.trajectory("0", pid, parse_axis("z"), 10)
    np.testing.assert_allclose(custom.embeddings, named.embeddings, atol=1e-5)
    axis = parse_axis("custom", "1 1 0")
    coords = data.rotated_cloud(pid, axis, math.pi / 3)
    centred = data.protein(pid).coords - data.protein(pid).coords.mean(axis=0)
    u = np.array(axis.spec)
    np.testing.assert_allclose(coords @ u, centred @ u, atol=1e-3)  # the component along the axis stays
    np.testing.assert_allclose(np.linalg.norm(coords, axis=1), np.linalg.norm(centred, axis=1), atol=1e-3)
    assert not np.allclose(coords, centred, atol=0.1)


def test_protein_search_is_case_insensitive_and_keeps_the_current_value(data):
    options = views.protein_options(data, "1acb", data.ids[0])
    values = [o["value"] for o in options]
    assert values[0] == data.ids[0] and set(values[1:]) == {i for i in data.ids if "1ACB" in i}
    assert len(views.protein_options(data, "", None, limit=5)) == 5
    assert views.protein_options(data, "zzzz", None) == []


# --------------------------------------------------------------------------- the views


def test_render_views_draws_one_panel_per_run_with_the_highlight_at_the_slider(data):
    pid = data.ids[1]
    v = views.render_views(data, ["0", "1"], pid, "y", "", 16, 4)
    assert not v.error and "step 4 of 15" in v.status and "2 run(s)" in v.status
    names = [t.name for t in v.traj2d.data]
    assert len(names) == 4 and names.count(HIGHLIGHT_NAME) == 2
    for view, fig in (("2d", v.traj2d), ("3d", v.traj3d)):
        k = 2 if view == "2d" else 3
        for n, run in enumerate(("0", "1")):
            proj = project_trajectories(data.trajectory(run, pid, parse_axis("y"), 16), n_components=k)
            line = [t for t in fig.data if t.name != HIGHLIGHT_NAME][n]
            mark = [t for t in fig.data if t.name == HIGHLIGHT_NAME][n]
            np.testing.assert_allclose(line.x, proj.points[0, 0, :, 0])
            np.testing.assert_allclose([mark.x[0], mark.y[0]], proj.points[0, 0, 4, :2])
    assert all(isinstance(t, go.Scatter3d) for t in v.traj3d.data)
    cloud = v.cloud.data[0]
    expected = data.rotated_cloud(pid, parse_axis("y"), 4 / 15 * 2 * math.pi)
    np.testing.assert_allclose(np.c_[cloud.x, cloud.y, cloud.z], expected, atol=1e-4)
    np.testing.assert_array_equal(cloud.marker.color, np.arange(len(expected)))  # coloured by residue index
    assert "96°" in v.cloud.layout.title.text


def test_moving_the_slider_moves_only_the_highlight(data):
    pid = data.ids[2]
    a = views.render_views(data, ["0"], pid, "z", "", 24, 0)
    misses = data.cache.misses
    b = views.render_views(data, ["0"], pid, "z", "", 24, 12)
    assert data.cache.misses == misses  # no new embedding
    np.testing.assert_array_equal(a.traj2d.data[0].x, b.traj2d.data[0].x)
    assert a.traj2d.data[1].x != b.traj2d.data[1].x
    assert b.traj2d.data[1].x[0] == pytest.approx(b.traj2d.data[0].x[12])
    assert a.traj2d.layout.uirevision == b.traj2d.layout.uirevision  # the user's zoom survives


@pytest.mark.parametrize(
    "args, message",
    [
        (([], "P", "z", "", 16, 0), "choose at least one run"),
        ((["0"], None, "z", "", 16, 0), "choose a protein"),
        ((["0"], "NOT-AN-ID", "z", "", 16, 0), "not in the store"),
        ((["0"], "P", "custom", "1 x 0", 16, 0), "custom axis"),
        ((["0"], "P", "z", "", 1, 0), "steps"),
        ((["0"], "upload:0000", "z", "", 16, 0), "upload the file again"),
    ],
)
def test_bad_choices_are_messages_not_exceptions(data, args, message):
    args = tuple(data.ids[0] if a == "P" else a for a in args)
    v = views.render_views(data, *args)
    assert v.error and message in v.status
    assert message in v.traj2d.layout.annotations[0].text


def _count_calls(monkeypatch, owner, name: str, counts: Counter) -> None:
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        counts[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)


def test_the_protein_is_resolved_once_per_render_and_export(data, monkeypatch):
    counts = Counter()
    _count_calls(monkeypatch, data, "protein", counts)
    v = views.render_views(data, ["0", "1"], data.ids[4], "x", "", 8, 1)
    assert not v.error and counts["protein"] == 1  # not again per run, for the cloud and the export name
    assert v.protein.key == data.ids[4]
    counts.clear()
    _, message, error = views.export_view(data, "traj2d", "html", ["0", "1"], data.ids[4], "x", "", 8, 1)
    assert not error and counts["protein"] == 1, message


def test_an_unexpected_error_is_a_short_message(data, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(data, "trajectory", boom)
    v = views.render_views(data, ["0"], data.ids[0], "z", "", 8, 0)
    assert v.error and "RuntimeError: encoder exploded" in v.status and "Traceback" not in v.status


def test_slider_keeps_its_angle_when_the_steps_change():
    top, marks, value = views.slider_settings(64, 63, 21)  # 120°
    assert (top, value) == (63, 21)
    top, marks, value = views.slider_settings(7, 63, 21)
    assert top == 6 and value == 2 and marks[6] == "360°" and marks[0] == "0°"
    assert views.slider_settings("bad", 10, 3)[0] == 10  # a bad steps value keeps the slider


# --------------------------------------------------------------------------- uploads


def test_a_real_upload_is_parsed_with_the_pipeline_policy_and_selected(data, tiny_runs):
    from data_pipeline.parse import read_structure

    path = tiny_runs.pdb / "pdbtbx" / "1ubq.cif.gz"
    before = _upload_temporaries()
    result = views.handle_upload(data, _data_url(path.read_bytes()), path.name, SESSION)
    assert not result.error and result.protein_key.startswith("upload:") and "1ubq" in result.message
    assert _upload_temporaries() == before  # the temporary file is gone
    protein = data.protein(result.protein_key, SESSION)
    np.testing.assert_array_equal(protein.coords, read_structure(path, selection="ca").coords)
    assert protein.label.startswith("1ubq (uploaded, 76 CA atoms")
    assert views.protein_options(data, "", None, session=SESSION)[0]["value"] == result.protein_key  # first
    v = views.render_views(data, ["0", "1"], result.protein_key, "x", "", 8, 2, session=SESSION)
    assert not v.error and len(v.traj2d.data) == 4
    same = views.handle_upload(data, _data_url(path.read_bytes()), "renamed.cif.gz", SESSION)
    assert same.protein_key == result.protein_key  # content-addressed: parsed once


def test_an_upload_is_checked_and_hashed_once(data, tiny_runs, monkeypatch):
    """One name check, one session check and one hash per upload, through either entry."""
    from apps.trajectory_explorer import data as data_module, uploads

    counts = Counter()
    for module in (data_module, uploads):
        for name in ("upload_name", "valid_session", "upload_key"):
            _count_calls(monkeypatch, module, name, counts)
    raw, session = (tiny_runs.pdb / "pdbtbx" / "1ubq.cif.gz").read_bytes(), new_session_id()
    once = Counter(upload_name=1, valid_session=1, upload_key=1)
    first = data.add_upload_contents("1ubq.cif.gz", _data_url(raw), session)  # parsed
    assert counts == once
    counts.clear()
    assert data.add_upload("again.cif.gz", raw, session) is first and counts == once  # known: not parsed again


def test_a_plain_pdb_upload_works(data, tiny_runs):
    path = tiny_runs.pdb / "BM5-clean" / "1HIA_l_u.pdb"
    result = views.handle_upload(data, _data_url(path.read_bytes()), path.name, SESSION)
    assert not result.error and data.protein(result.protein_key, SESSION).coords.shape[1] == 3


@pytest.mark.parametrize(
    "name, raw, message",
    [
        ("corrupt.pdb", b"this is not\x00a structure\n" * 50, "corrupt.pdb: not a readable structure file"),
        ("corrupt.cif.gz", gzip.compress(b"data_x\n_cell.length_a oops\n")[:-6], "corrupt.cif.gz: not a readable"),
        ("empty.pdb", b"", "the file is empty"),
        ("notes.txt", b"ATOM", "ending in .cif, .cif.gz, .pdb or .pdb.gz"),
        ("huge.pdb", b"A" * (300 * 1024), "over the upload limit"),
    ],
)
def test_bad_uploads_are_clear_messages(data, name, raw, message):
    before = _upload_temporaries()
    result = views.handle_upload(data, _data_url(raw), name, SESSION)
    assert result.error and result.protein_key is None and message in result.message
    assert "Traceback" not in result.message and "/tmp" not in result.message
    assert _upload_temporaries() == before


def test_an_upload_that_is_not_base64_is_a_message(data):
    result = views.handle_upload(data, "data:application/octet-stream;base64,!!!", "x.pdb", SESSION)
    assert result.error and "base64" in result.message


# --------------------------------------------------------------------------- evaluation and export


def test_evaluation_panel_shows_metrics_json_or_how_to_get_it(data):
    care, simclr = views.evaluation_panel(data, ["0", "1"])
    text = str(care)
    for title in ("PC1 error, linear probe", "Wahba error W_f", "γ_f", "rotation retrieval top-1", "random init"):
        assert title in text
    assert "MLP probe" not in text  # the MLP probe was not fitted: no empty row
    metrics = data.evaluation("0")
    assert f"{metrics['pc1_angle_deg_mean']:.1f}°" in text and f"{metrics['retrieval_top1']:.3f}" in text
    assert "protein-care evaluate" in str(simclr) and str(data.run("1").run.dir) in str(simclr)


def test_evaluation_rows_format_missing_values_as_dashes():
    rows = views.evaluation_table({"pc1_angle_deg_mean": 12.345, "gamma_f_mean": None, "baseline": None})
    assert rows == [("PC1 error, linear probe (° mean)", "12.3°", "–"),
                    ("γ_f (lower = more equivariant)", "–", "–")]


def test_training_curves_have_one_line_per_run_and_quantity(data):
    fig = views.curves(data, ["0", "1"])
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == ["loss", "InfoNCE"]
    loss_lines = [t for t in fig.data if t.xaxis == "x"]
    assert [t.name for t in loss_lines] == ["care (care, step 3)", "simclr (simclr, step 3)"]
    assert list(loss_lines[0].x) == [1, 2, 3]


def test_export_html_is_self_contained_and_png_says_what_is_missing(data):
    """The figure is rebuilt on the server from the page's choices (never sent back by
    the browser): the export holds the same traces as the page's figure."""
    choices = (["0", "1"], data.ids[0], "z", "", 8, 3)
    v = views.render_views(data, *choices)
    download, message, error = views.export_view(data, "traj2d", "html", *choices)
    assert not error and download["filename"] == f"{data.ids[0]}-trajectories-2d.html"
    html = base64.b64decode(download["content"]).decode() if download["base64"] else download["content"]
    assert len(html) > 1_000_000 and "plotly" in html and data.ids[0] in html
    assert all(run.label in html for run in data.runs.values()) and "about z, 8 steps" in v.traj2d.layout.title.text
    assert "about z, 8 steps" in html
    download, message, error = views.export_view(data, "cloud", "png", *choices)
    if png_export_available():
        assert not error and download["filename"].endswith(".png")
    else:
        assert error and download is None and "kaleido" in message
    download, message, error = views.export_view(data, "traj3d", "html", ["0"], None, "z", "", 8, 0)
    assert error and download is None and "nothing to export: choose a protein" in message
    for empty in (None, go.Figure().to_dict()):  # before the first render, or a figure without traces
        assert views.export_figure(empty, "html", "x") == (None, "nothing to export yet: choose a run and a protein "
                                                                 "first", True)


def test_encoders_are_loaded_with_weights_only(tiny_runs, monkeypatch):
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ExplorerData.open([tiny_runs.care], tiny_runs.store)
    assert seen == [True]


def test_a_malformed_metrics_json_is_a_message(data, monkeypatch):
    monkeypatch.setattr(data, "evaluation", lambda key: {"pc1_angle_deg_mean": 3.0, "baseline": "oops"})
    (panel,) = views.evaluation_panel(data, ["0"])
    assert "reading metrics.json failed" in str(panel)


def test_a_store_cloud_without_points_is_a_message_not_an_internal_error(tiny_runs, tmp_path, monkeypatch):
    from data_pipeline import store_writer
    from data_pipeline.store import PointCloudStore
    from data_pipeline.store_writer import CloudRecord, StoreWriter

    source = PointCloudStore(tiny_runs.store)
    monkeypatch.setattr(store_writer, "MIN_POINTS", 0)  # as the writer of stores before 2026-11-26
    with StoreWriter(tmp_path / "store") as writer:
        writer.add(CloudRecord("EMPTY", np.zeros((0, 3), np.float32), np.zeros(0, np.uint8), {"split": "train"}))
        for i in range(3):
            writer.add(CloudRecord(source.ids[i], np.array(source[i]), np.array(source.features(i)),
                                   {"split": "train"}))
        writer.commit({k: v for k, v in source.meta.items() if k != "files"})
    data = ExplorerData.open(tiny_runs.runs, tmp_path / "store")
    v = views.render_views(data, ["0"], "EMPTY", "z", "", 8, 1)
    assert v.error and "protein 'EMPTY' has no points in the store" in v.status
    download, message, error = views.export_view(data, "traj2d", "html", ["0"], "EMPTY", "z", "", 8, 1)
    assert error and download is None and "no points" in message
    assert not views.render_views(data, ["0"], source.ids[0], "z", "", 8, 1).error  # the others still render

"""Trajectory figures: one panel per run, hover text, self-contained atomic HTML, PNG."""

from __future__ import annotations

import os
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from protein_care.plotting import (
    PngExportError,
    png_export_available,
    trajectory_figure,
    write_html,
    write_png,
)
from protein_care.trajectories import compute_trajectories, project_trajectories
from tests.protein_care.standins import MomentEncoder, random_clouds

IDS = ["1ABC", "2XYZ", "3PQR"]


@pytest.fixture(scope="module")
def panels():
    clouds = random_clouds(3, seed=5)
    a = compute_trajectories(MomentEncoder(), clouds, IDS, steps=12, length_scale=10.0)
    b = compute_trajectories(MomentEncoder(invariant=True), clouds, IDS, steps=12, length_scale=10.0)
    return [("care (step 3)", a), ("invariant", b)]


def test_one_panel_per_run_with_a_trace_per_protein_and_axis(panels):
    fig = trajectory_figure(panels)
    assert len(fig.data) == 2 * 3 * 3
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert sum(bool(t.showlegend) for t in fig.data) == 9  # legend entries only once
    titles = [a.text for a in fig.layout.annotations]
    assert any("care (step 3)" in t for t in titles) and any("invariant" in t for t in titles)


def test_hover_shows_protein_axis_and_angle(panels):
    fig = trajectory_figure(panels)
    trace = fig.data[4]  # second protein, y axis, first panel
    for word in ("protein", "axis", "angle"):
        assert word in trace.hovertemplate
    assert list(trace.customdata[0][:2]) == ["2XYZ", "y"]
    np.testing.assert_allclose([row[2] for row in trace.customdata], np.linspace(0, 360, 12))
    assert trace.meta == "care (step 3)"


def test_3d_view_uses_three_components(panels):
    projections = [project_trajectories(t, n_components=3) for _, t in panels]
    fig = trajectory_figure(panels, view="3d", projections=projections)
    assert all(isinstance(t, go.Scatter3d) for t in fig.data) and len(fig.data) == 18
    np.testing.assert_allclose(fig.data[0].z, projections[0].points[0, 0, :, 2])
    with pytest.raises(ValueError, match="view"):
        trajectory_figure(panels, view="4d")


def test_html_is_self_contained_and_written_atomically(panels, tmp_path):
    out = tmp_path / "sub" / "traj.html"
    out.parent.mkdir()
    out.write_text("old")
    write_html(trajectory_figure(panels), out)
    html = out.read_text(encoding="utf-8")
    assert len(html) > 1_000_000 and "plotly.js" in html  # the bundle is embedded …
    assert not re.search(r"<script[^>]+src=[\"']https?:", html)  # … and nothing is fetched
    assert "2XYZ" in html and "protein %{customdata[0]}" in html
    assert os.listdir(out.parent) == ["traj.html"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not mkstemp's 0600


def test_png_export_without_kaleido_is_a_clear_error(panels, tmp_path):
    if png_export_available():
        pytest.skip("kaleido is installed")
    with pytest.raises(PngExportError, match="kaleido"):
        write_png(trajectory_figure(panels), tmp_path / "traj.png")
    assert list(tmp_path.iterdir()) == []

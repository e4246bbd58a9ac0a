"""Plotly figures of the explorer. The trajectory panels are the library's
:func:`protein_care.plotting.trajectory_figure` (the same PCA projection as
``protein-care plot``); this module only adds the highlighted point of the current angle,
the point cloud and the training curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

HIGHLIGHT_NAME = "current angle"
HIGHLIGHT_COLOUR = "#ffb000"
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
#: Training-curve columns of metrics.jsonl, in the order they are drawn.
CURVE_KEYS = (("loss", "loss"), ("info_nce", "InfoNCE"), ("equivariance", "equivariance term"))
MAX_COLUMNS = 3


def message_figure(text: str, *, height: int = 320) -> go.Figure:
    """An empty figure that says ``text`` (before a choice is made, or on an error)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#666"))
    fig.update_layout(template="plotly_white", height=height, xaxis_visible=False, yaxis_visible=False,
                      margin=dict(t=30, l=20, r=20, b=20))
    return fig


def trajectories_figure(panels: Sequence, index: int, *, view: str = "2d", title: str | None = None,
                        uirevision: str | None = None) -> go.Figure:
    """One panel per run (``(label, Trajectories)`` pairs of ONE protein and ONE axis)
    with the point at step ``index`` highlighted on every trajectory."""
    from protein_care.plotting import trajectory_figure
    from protein_care.trajectories import project_trajectories

    k = 2 if view == "2d" else 3
    projections = [project_trajectories(traj, n_components=k) for _, traj in panels]
    cols = max(1, min(MAX_COLUMNS, len(panels)))
    fig = trajectory_figure(panels, view=view, projections=projections, title=title, columns=cols)
    for n, ((label, traj), proj) in enumerate(zip(panels, projections)):
        i = int(np.clip(index, 0, len(traj.angles) - 1))
        point = proj.points[0, 0, i]  # (k,)
        degrees = float(np.degrees(traj.angles[i]))
        common = dict(
            mode="markers", name=HIGHLIGHT_NAME, legendgroup="highlight", showlegend=n == 0,
            meta=label, customdata=[[traj.ids[0], traj.axes[0], degrees]],
            hovertemplate="current angle %{customdata[2]:.1f}°<extra>%{meta}</extra>",
            marker=dict(size=15 if view == "2d" else 7, color=HIGHLIGHT_COLOUR, symbol="circle",
                        line=dict(color="#222", width=2)),
        )
        row, col = n // cols + 1, n % cols + 1
        if view == "2d":
            trace = go.Scatter(x=[point[0]], y=[point[1]], **common)
        else:
            trace = go.Scatter3d(x=[point[0]], y=[point[1]], z=[point[2]], **common)
        fig.add_trace(trace, row=row, col=col)
    rows = (len(panels) + cols - 1) // cols
    fig.update_layout(width=None, autosize=True, height=(430 if view == "2d" else 470) * rows + 90,
                      uirevision=uirevision, margin=dict(t=100, l=50, r=20, b=40),
                      legend=dict(orientation="h", yanchor="top", y=-0.16 if view == "2d" else 0.0, title=None))
    return fig


def cloud_figure(coords: np.ndarray, *, title: str, axis_vector: np.ndarray | None, radius: float,
                 uirevision: str | None = None) -> go.Figure:
    """The protein's trace (points in chain order, coloured by residue index) at one
    pose, in a fixed box of half-width ``radius`` so that the rotation is visible, with
    the rotation axis drawn through the centroid."""
    n = len(coords)
    index = np.arange(n)
    fig = go.Figure()
    fig.add_trace(go.Scatter3d(
        x=coords[:, 0], y=coords[:, 1], z=coords[:, 2], mode="lines+markers", name="trace",
        line=dict(color=index, colorscale="Viridis", width=4),
        marker=dict(size=3, color=index, colorscale="Viridis", showscale=True,
                    colorbar=dict(title="residue index", thickness=12, len=0.7)),
        customdata=index, hovertemplate="residue index %{customdata}<extra></extra>", showlegend=False,
    ))
    if axis_vector is not None:
        u = np.asarray(axis_vector, dtype=float) * radius
        fig.add_trace(go.Scatter3d(x=[-u[0], u[0]], y=[-u[1], u[1]], z=[-u[2], u[2]], mode="lines",
                                   name="rotation axis", line=dict(color="#444", width=3, dash="dash"),
                                   hoverinfo="name", showlegend=True))
    span = [-radius, radius]
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)), template="plotly_white", height=520, uirevision=uirevision,
        scene=dict(xaxis=dict(range=span, title="x (Å)"), yaxis=dict(range=span, title="y (Å)"),
                   zaxis=dict(range=span, title="z (Å)"), aspectmode="cube"),
        margin=dict(t=60, l=0, r=0, b=0), legend=dict(x=0, y=1),
    )
    return fig


def curves_figure(curves: Sequence[tuple[str, list[dict]]]) -> go.Figure:
    """Training curves from ``metrics.jsonl``: one panel per logged quantity (loss,
    InfoNCE, equivariance), one line per run."""
    keys = [(k, t) for k, t in CURVE_KEYS if any(any(k in row for row in rows) for _, rows in curves)]
    if not keys:
        return message_figure("no training curves (metrics.jsonl is empty or missing)", height=260)
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[t for _, t in keys], horizontal_spacing=0.08)
    for n, (label, rows) in enumerate(curves):
        colour = RUN_COLOURS[n % len(RUN_COLOURS)]
        for c, (key, _) in enumerate(keys):
            points = [(r["step"], r[key]) for r in rows if "step" in r and isinstance(r.get(key), (int, float))]
            if not points:
                continue
            steps, values = zip(*points)
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=c == 0 or not any(t.legendgroup == label for t in fig.data),
                                     line=dict(color=colour), marker=dict(size=4)), row=1, col=c + 1)
            fig.update_xaxes(title_text="step", row=1, col=c + 1)
    fig.update_layout(template="plotly_white", height=300, margin=dict(t=40, l=50, r=20, b=40),
                      legend=dict(orientation="h", y=-0.3))
    return fig

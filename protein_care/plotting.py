"""Self-contained interactive figures (plotly, with plotly.js embedded: they open
offline) and their atomic writing.

- :func:`trajectory_figure`: one panel per run of projected rotation trajectories
  (:mod:`protein_care.trajectories`), hover showing protein, axis and angle.
- :func:`write_html`: the figure as one HTML file, written atomically.
- :func:`write_png`: a static PNG through plotly's image export when the ``kaleido``
  engine is installed; otherwise :class:`PngExportError` with what to install.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from data_pipeline.atomic_files import temporary_beside, write_text_atomic
from protein_care.trajectories import Projection, Trajectories, project_trajectories, regularity_summary

AXIS_COLOURS = {"x": "#d62728", "y": "#2ca02c", "z": "#1f77b4"}
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_SYMBOLS_2D = ("circle", "square", "diamond", "triangle-up", "x", "star")
_SYMBOLS_3D = ("circle", "square", "diamond", "cross", "x", "circle-open")
HOVER_TEMPLATE = "protein %{customdata[0]}<br>axis %{customdata[1]}<br>angle %{customdata[2]:.1f}°<extra>%{meta}</extra>"


class PngExportError(RuntimeError):
    """PNG export is not possible here (no ``kaleido``, or the engine failed)."""


def _as_panels(panels) -> list[tuple[str, Trajectories]]:
    if isinstance(panels, Mapping):
        return list(panels.items())
    if isinstance(panels, Trajectories):
        return [("", panels)]
    return [(str(title), traj) for title, traj in panels]


def _panel_title(title: str, proj: Projection, traj: Trajectories) -> str:
    explained = 100 * float(proj.explained_variance_ratio.sum())
    reg = regularity_summary(traj)
    cv = reg["loop_speed_cv_mean"]
    parts = [f"PCA {explained:.0f}% of variance"]
    if cv is not None:
        parts.append(f"speed CV {cv:.2f}")
    return f"{title}<br><sup>{', '.join(parts)}</sup>" if title else ", ".join(parts)


def trajectory_figure(
    panels: Sequence[tuple[str, Trajectories]] | Mapping[str, Trajectories] | Trajectories,
    *,
    view: str = "2d",
    projections: Sequence[Projection] | None = None,
    title: str | None = None,
    columns: int = 3,
) -> go.Figure:
    """Projected trajectories, one panel per run.

    Args:
        panels: ``(title, Trajectories)`` pairs (or a mapping title → Trajectories, or
            one Trajectories), one per run.
        view: ``"2d"`` or ``"3d"`` (PCA to 2 or 3 components, fitted per run).
        projections: precomputed :func:`~protein_care.trajectories.project_trajectories`
            results, one per panel (computed when not given).
        title: figure title.
        columns: panels per row.

    Colour is the rotation axis, dash/marker the protein; hovering a point shows the
    protein, the axis and the angle in degrees. Each (protein, axis) is one legend
    entry shared by all panels.
    """
    if view not in ("2d", "3d"):
        raise ValueError(f"view must be '2d' or '3d', got {view!r}")
    items = _as_panels(panels)
    if not items:
        raise ValueError("no trajectories to plot")
    k = 2 if view == "2d" else 3
    if projections is None:
        projections = [project_trajectories(traj, n_components=k) for _, traj in items]
    if len(projections) != len(items):
        raise ValueError(f"{len(projections)} projections for {len(items)} panels")
    cols = max(1, min(columns, len(items)))
    rows = math.ceil(len(items) / cols)
    specs = [[{"type": "scene" if view == "3d" else "xy"} for _ in range(cols)] for _ in range(rows)]
    fig = make_subplots(
        rows=rows, cols=cols, specs=specs,
        subplot_titles=[_panel_title(t, p, tr) for (t, tr), p in zip(items, projections)],
        horizontal_spacing=0.1, vertical_spacing=0.12 if rows > 1 else 0.08,
    )
    symbols = _SYMBOLS_2D if view == "2d" else _SYMBOLS_3D
    for n, ((run_title, traj), proj) in enumerate(zip(items, projections)):
        row, col = n // cols + 1, n % cols + 1
        degrees = np.degrees(traj.angles)
        for p, protein in enumerate(traj.ids):
            for a, axis in enumerate(traj.axes):
                pts = proj.points[p, a]  # (S, k)
                custom = np.array([[protein, axis, float(deg)] for deg in degrees], dtype=object)
                common = dict(
                    mode="lines+markers",
                    name=f"{protein} · {axis}",
                    legendgroup=f"{protein}-{axis}",
                    showlegend=n == 0,
                    customdata=custom,
                    hovertemplate=HOVER_TEMPLATE,
                    meta=run_title or "trajectory",
                    line=dict(color=AXIS_COLOURS.get(axis, "#555555"), dash=_DASHES[p % len(_DASHES)], width=2),
                    marker=dict(symbol=symbols[p % len(symbols)], size=4 if view == "2d" else 2,
                                color=AXIS_COLOURS.get(axis, "#555555")),
                )
                if view == "2d":
                    trace = go.Scatter(x=pts[:, 0], y=pts[:, 1], **common)
                else:
                    trace = go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], **common)
                fig.add_trace(trace, row=row, col=col)
        if view == "2d":
            ratio = proj.explained_variance_ratio
            fig.update_xaxes(title_text=f"PC1 ({100 * ratio[0]:.0f}%)", row=row, col=col)
            fig.update_yaxes(title_text=f"PC2 ({100 * ratio[1]:.0f}%)", row=row, col=col)
            axis_id = "x" if n == 0 else f"x{n + 1}"
            fig.update_yaxes(scaleanchor=axis_id, scaleratio=1, row=row, col=col)
    fig.update_layout(
        title=title or "Trajectories through embedding space (rotation 0 → 2π about x, y, z)",
        height=460 * rows + 60, width=max(520, 470 * cols), template="plotly_white",
        legend=dict(title="protein · axis", groupclick="togglegroup"),
        margin=dict(t=110, l=50, r=30, b=40),
    )
    return fig


def write_html(fig: go.Figure, path) -> Path:
    """Write ``fig`` as one self-contained HTML file (plotly.js embedded; no network
    needed to open it), atomically."""
    html = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False, "responsive": True})
    return write_text_atomic(path, html)


def png_export_available() -> bool:
    """Whether plotly's static image engine (``kaleido``) is importable."""
    return importlib.util.find_spec("kaleido") is not None


def write_png(fig: go.Figure, path, *, scale: float = 2.0) -> Path:
    """Write a static PNG of ``fig`` atomically; :class:`PngExportError` when the
    ``kaleido`` engine is missing or fails (the message says what to install)."""
    if not png_export_available():
        raise PngExportError(
            "PNG export needs plotly's image engine 'kaleido', which is not installed "
            "(install it with `uv add kaleido` or `pip install kaleido`); the HTML figure is unaffected"
        )
    path = Path(path)
    tmp = temporary_beside(path, suffix=".tmp.png")  # kaleido picks its writer by the extension
    try:
        fig.write_image(str(tmp), format="png", scale=scale)
        os.replace(tmp, path)
    except Exception as error:  # kaleido needs a browser engine; report what went wrong
        raise PngExportError(f"PNG export with kaleido failed: {error}") from error
    finally:
        tmp.unlink(missing_ok=True)
    return path

"""What each control of the page produces, as plain functions of the data service and
the control values. The Dash callbacks (:mod:`.callbacks`) only wrap these, so the logic
is tested without a browser. No function here raises for a user's input: problems come
back as a message for the page."""

from __future__ import annotations

import logging
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dash import dcc, html

from apps.trajectory_explorer import figures
from apps.trajectory_explorer.data import ExplorerData
from apps.trajectory_explorer.inputs import ExplorerError, check_steps, parse_axis
from apps.trajectory_explorer.uploads import Protein

log = logging.getLogger(__name__)

#: (metrics.json key, row title, format) of the evaluation panel.
EVALUATION_ROWS = (
    ("pc1_angle_deg_mean", "PC1 error, linear probe (° mean)", "{:.1f}°"),
    ("pc1_mlp_angle_deg_mean", "PC1 error, MLP probe (° mean)", "{:.1f}°"),
    ("wahba_error_mean", "Wahba error W_f / √n", "{:.4f}"),
    ("wahba_relative_mean", "Wahba error relative to ‖F_a − F‖", "{:.3f}"),
    ("gamma_f_mean", "γ_f (lower = more equivariant)", "{:.3g}"),
    ("retrieval_top1", "rotation retrieval top-1", "{:.3f}"),
)
EXPORT_KINDS = {"traj2d": "trajectories-2d", "traj3d": "trajectories-3d", "cloud": "point-cloud"}


def _internal(error: BaseException, what: str) -> str:
    """A short message for an unexpected error; the traceback goes to the server log."""
    log.error("%s failed", what, exc_info=error)
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{what} failed: {type(error).__name__}: {text[:200]}"


# --------------------------------------------------------------------------- trajectories


@dataclass
class Views:
    """The figures of one choice of runs, protein, axis, steps and angle, and a status
    line (``error`` True when it reports a problem). A figure not asked for is None;
    ``protein`` is the one shown (None on error)."""

    traj2d: Any
    traj3d: Any
    cloud: Any
    status: str
    error: bool = False
    protein: Protein | None = None


def render_views(data: ExplorerData, run_keys, protein_key, axis_choice, axis_text, steps, index, *,
                 session=None, only: str | None = None) -> Views:
    """Trajectory panels (2-D and 3-D PCA) of the chosen runs, the point cloud at the
    slider's angle, and the status line; ``only`` (a key of :data:`EXPORT_KINDS`) builds
    just that figure. ``session`` is the page's, for its uploads."""
    try:
        return _render_views(data, run_keys, protein_key, axis_choice, axis_text, steps, index, session, only)
    except ExplorerError as error:
        return _failed(str(error))
    except Exception as error:  # noqa: BLE001 - the page shows a message, never a traceback
        return _failed(_internal(error, "computing the trajectories"))


def _failed(message: str) -> Views:
    blank = figures.message_figure(message)
    return Views(blank, figures.message_figure(message), figures.message_figure(message), message, True)


def _render_views(data, run_keys, protein_key, axis_choice, axis_text, steps, index, session, only) -> Views:
    run_keys = [k for k in (run_keys or []) if k in data.runs]
    if not run_keys:
        raise ExplorerError("choose at least one run")
    if not protein_key:
        raise ExplorerError("choose a protein (type to search the store) or upload a structure file")
    axis = parse_axis(axis_choice, axis_text)
    steps = check_steps(steps)
    protein = data.protein(protein_key, session)  # resolved once, passed along
    panels = [(data.run(k).label, data.trajectory(k, protein, axis, steps)) for k in run_keys]
    angles = panels[0][1].angles
    index = int(np.clip(int(index or 0), 0, steps - 1))
    degrees = math.degrees(float(angles[index]))
    revision = f"{','.join(run_keys)}|{protein.key}|{axis.spec}|{steps}"
    title = f"{protein.label}: rotation 0 → 360° about {axis.label}, {steps} steps"
    traj2d = traj3d = cloud = None
    if only in (None, "traj2d"):
        traj2d = figures.trajectories_figure(panels, index, view="2d", title=title, uirevision=revision)
    if only in (None, "traj3d"):
        traj3d = figures.trajectories_figure(panels, index, view="3d", title=title + " (3-D PCA)",
                                             uirevision=revision)
    if only in (None, "cloud"):
        coords = data.rotated_cloud(protein, axis, float(angles[index]))
        radius = float(np.linalg.norm(coords, axis=1).max()) * 1.05 + 1.0
        cloud = figures.cloud_figure(
            coords, title=f"{protein.label} at {degrees:.0f}° about {axis.label}", axis_vector=_axis_vector(axis.spec),
            radius=radius, uirevision=f"cloud|{protein.key}",
        )
    status = (f"{protein.label} · {len(protein.coords)} points · axis {axis.label} · angle {degrees:.1f}° "
              f"(step {index} of {steps - 1}) · {len(run_keys)} run(s) · cached trajectories {len(data.cache)}")
    return Views(traj2d, traj3d, cloud, status, False, protein)


def _axis_vector(spec) -> np.ndarray:
    if isinstance(spec, str):
        return np.eye(3)["xyz".index(spec)]
    return np.asarray(spec, dtype=float)


# --------------------------------------------------------------------------- controls


def slider_settings(steps, old_max=None, old_value=None) -> tuple[int, dict, int]:
    """``(max, marks, value)`` of the angle slider (step indices 0 … steps−1, marks in
    degrees); the value keeps its angle when the number of steps changes."""
    try:
        steps = check_steps(steps)
    except ExplorerError:
        steps = int(old_max) + 1 if isinstance(old_max, (int, float)) and old_max >= 1 else 64
    top = steps - 1
    marks = {}
    for quarter in range(5):  # the steps nearest 0, 90, 180, 270 and 360°, labelled with their own angle
        i = (quarter * top + 2) // 4  # round half up
        marks[i] = f"{i * 360 / top:.0f}°"
    value = 0
    if isinstance(old_value, (int, float)) and isinstance(old_max, (int, float)) and old_max > 0:
        value = int(round(float(old_value) / float(old_max) * top))
    return top, marks, int(np.clip(value, 0, top))


def protein_options(data: ExplorerData, search: str | None, current: str | None, limit: int = 100, *,
                    session=None) -> list[dict]:
    """Options of the protein dropdown: the page's uploads first, then store IDs
    matching ``search`` (at most ``limit``), always including the current value."""
    options = [{"label": f"⬆ {p.label}", "value": p.key} for p in data.uploads(session)]
    seen = {o["value"] for o in options}
    ids = data.search_ids(search, limit)
    if current and current not in seen and current not in ids and data.in_store(current):
        ids = [current, *ids]
    options += [{"label": i, "value": i} for i in ids if i not in seen]
    return options


@dataclass
class UploadResult:
    protein_key: str | None
    message: str
    error: bool


def handle_upload(data: ExplorerData, contents, filename, session=None) -> UploadResult:
    """Parse an uploaded file for the page's ``session``; on success its key (select
    it), else a message."""
    if not contents:
        return UploadResult(None, "", False)
    try:
        protein = data.add_upload_contents(filename, contents, session)
    except ExplorerError as error:
        return UploadResult(None, str(error), True)
    except Exception as error:  # noqa: BLE001
        return UploadResult(None, _internal(error, f"reading {filename!r}"), True)
    return UploadResult(protein.key, f"loaded {protein.label}", False)


# --------------------------------------------------------------------------- evaluation


def _format(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def evaluation_table(metrics: dict) -> list[tuple[str, str, str]]:
    """``(quantity, run, random-init baseline)`` rows of a ``metrics.json``."""
    baseline = metrics.get("baseline") or {}
    rows = []
    for key, title, pattern in EVALUATION_ROWS:
        if key not in metrics and key not in baseline:
            continue
        if metrics.get(key) is None and baseline.get(key) is None and "mlp" in key:
            continue  # the MLP probe was not fitted
        rows.append((title, _format(metrics.get(key), pattern), _format(baseline.get(key), pattern)))
    return rows


def evaluation_panel(data: ExplorerData, run_keys) -> list:
    """One card per chosen run: its evaluation numbers (from ``metrics.json``) or how
    to get them."""
    try:
        return _evaluation_cards(data, run_keys)
    except Exception as error:  # noqa: BLE001 - a malformed metrics.json is a message
        return [html.P(_internal(error, "reading metrics.json"), className="error")]


def _evaluation_cards(data: ExplorerData, run_keys) -> list:
    cards = []
    for key in [k for k in (run_keys or []) if k in data.runs]:
        entry = data.run(key)
        metrics = data.evaluation(key)
        body: list = [html.H4(entry.label)]
        if metrics is None:
            body.append(html.P(["No evaluation yet: run ", html.Code(f"protein-care evaluate {entry.run.dir}")],
                               className="hint"))
        else:
            rows = evaluation_table(metrics)
            head = html.Tr([html.Th("quantity"), html.Th("run"), html.Th("random init")])
            table = html.Table([html.Thead(head), html.Tbody([html.Tr([html.Td(c) for c in r]) for r in rows])],
                               className="metrics")
            body.append(table)
            note = (f"{metrics.get('split', '?')} split of {Path(str(metrics.get('store', '?'))).name}, "
                    f"{metrics.get('n_clouds', '?')} clouds, checkpoint step {metrics.get('checkpoint_step', '?')}")
            if metrics.get("retrieval_chance") is not None:
                note += f"; retrieval chance {metrics['retrieval_chance']:.3f}"
            if metrics.get("checkpoint_step") not in (None, entry.run.step):
                note += f" (the app shows step {entry.run.step})"
            body.append(html.P(note, className="hint"))
        cards.append(html.Div(body, className="card", id={"type": "eval-card", "run": key}))
    if not cards:
        return [html.P("choose a run", className="hint")]
    return cards


def curves(data: ExplorerData, run_keys):
    """Training curves of the chosen runs."""
    try:
        chosen = [k for k in (run_keys or []) if k in data.runs]
        return figures.curves_figure([(data.run(k).label, data.curves(k)) for k in chosen])
    except Exception as error:  # noqa: BLE001
        return figures.message_figure(_internal(error, "reading the training curves"), height=260)


# --------------------------------------------------------------------------- export


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "figure"


def export_figure(figure, fmt: str, name: str) -> tuple[dict | None, str, bool]:
    """``(download, message, error)`` for the current figure as a self-contained HTML
    (plotly.js embedded) or a PNG (needs the kaleido engine). ``download`` is what
    ``dcc.Download`` takes."""
    import plotly.graph_objects as go

    from protein_care.plotting import PngExportError, write_html, write_png

    fig = go.Figure(figure)  # None gives an empty figure
    if not fig.data:
        return None, "nothing to export yet: choose a run and a protein first", True
    try:
        filename = f"{_safe_name(name)}.{fmt}"
        with tempfile.TemporaryDirectory(prefix="protein-care-export-") as tmp:
            path = Path(tmp) / filename
            if fmt == "html":
                write_html(fig, path)
            elif fmt == "png":
                write_png(fig, path)
            else:
                return None, f"unknown export format {fmt!r}", True
            download = dcc.send_file(str(path), filename=filename)
    except PngExportError as error:
        return None, f"PNG export is not available here: {error}", True
    except Exception as error:  # noqa: BLE001
        return None, _internal(error, f"exporting {fmt.upper()}"), True
    return download, f"exported {filename}", False


def export_view(data: ExplorerData, which: str, fmt: str, run_keys, protein_key, axis_choice, axis_text, steps,
                index, *, session=None) -> tuple:
    """:func:`export_figure` of the figure chosen in the page (``traj2d``, ``traj3d``
    or ``cloud``), rebuilt here from the page's choices and the cached trajectories
    (the browser sends its choices, never the figures), named after the protein."""
    if which not in EXPORT_KINDS:
        return None, f"choose a figure to export, got {which!r}", True
    v = render_views(data, run_keys, protein_key, axis_choice, axis_text, steps, index, session=session, only=which)
    if v.error:
        return None, f"nothing to export: {v.status}", True
    label = v.protein.label.split(" (")[0]
    return export_figure(getattr(v, which), fmt, f"{label}-{EXPORT_KINDS[which]}")

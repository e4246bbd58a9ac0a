"""The comparison report: one self-contained HTML page from a ``results.json``.

``protein-care demo`` and ``protein-care compare`` write ``DIR/results.json`` (numbers)
and ``DIR/trajectories/<run>.npz`` (trajectory embeddings), then call
:func:`write_report`, which only reads them: it never re-evaluates a model. The page
holds the paper's Fig. 2 analogues — (a) trajectories, (b) PC1 error per method,
(c) Wahba error per method — plus rotation retrieval, the random-init baseline, the
metrics across training, the λ trade-off, and the table of numbers.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from data_pipeline.atomic_files import write_text_atomic
from protein_care.plotting import trajectory_figure
from protein_care.trajectories import Trajectories, project_trajectories

#: (key, column title, format) of the table of numbers, in order.
TABLE_COLUMNS = (
    ("pc1_angle_deg_mean", "PC1 error, linear (° mean)", "{:.1f}"),
    ("pc1_angle_deg_median", "PC1 linear (° median)", "{:.1f}"),
    ("pc1_mlp_angle_deg_mean", "PC1 error, MLP (° mean)", "{:.1f}"),
    ("pc1_well_defined_angle_deg_mean", "PC1 linear, λ2 ≤ 0.8λ1 (°)", "{:.1f}"),
    ("wahba_error_mean", "W_f / √n", "{:.4f}"),
    ("wahba_relative_mean", "W_f / ‖F_a − F‖", "{:.3f}"),
    ("embedding_displacement_mean", "‖F_a − F‖ / √n", "{:.3f}"),
    ("gamma_f_mean", "γ_f", "{:.3g}"),
    ("composition_error_mean", "composition error", "{:.3f}"),
    ("retrieval_top1", "retrieval top-1", "{:.3f}"),
)
RESULTS_NAME = "results.json"
REPORT_NAME = "report.html"
TRAJECTORY_DIR = "trajectories"


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return pattern.format(value)


def save_trajectories(traj: Trajectories, path: Path) -> Path:
    """Write one run's trajectories as ``.npz`` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, ids=np.array(traj.ids), axes=np.array(traj.axes), angles=traj.angles, embeddings=traj.embeddings)
    tmp.replace(path)
    return path


def load_trajectories(path: Path) -> Trajectories:
    with np.load(path, allow_pickle=False) as data:
        return Trajectories(
            ids=[str(i) for i in data["ids"]], axes=tuple(str(a) for a in data["axes"]),
            angles=data["angles"], embeddings=data["embeddings"],
        )


# --------------------------------------------------------------------------- figures


def _bars_figure(runs: list[dict], baseline: dict | None, results: dict) -> go.Figure:
    """(b) PC1 error, (c) Wahba error, relative Wahba error and retrieval: one bar per run,
    the random-init baseline dashed, chance dotted."""
    panels = [
        ("pc1_angle_deg_mean", "(b) PC1 error, linear probe (mean °)", results.get("pc1_chance_deg", math.degrees(1.0))),
        ("wahba_error_mean", "(c) Wahba error W_f / √n", None),
        ("wahba_relative_mean", "relative Wahba error W_f / ‖F_a − F‖ (1: identity fits as well)", None),
        ("retrieval_top1", "rotation retrieval top-1 (knows the protein?)", results.get("retrieval_chance")),
    ]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[title for _, title, _ in panels],
                        vertical_spacing=0.2, horizontal_spacing=0.08)
    names = [r["name"] for r in runs]
    for n, (key, _, chance) in enumerate(panels):
        row, col = n // 2 + 1, n % 2 + 1
        values = [r["metrics"].get(key) for r in runs]
        fig.add_trace(go.Bar(x=names, y=values, marker_color="#1f77b4", showlegend=False,
                             text=[_fmt(v, "{:.3g}") for v in values], textposition="outside"), row=row, col=col)
        if baseline is not None and baseline.get(key) is not None:
            fig.add_hline(y=baseline[key], line_dash="dash", line_color="#7f7f7f", row=row, col=col,
                          annotation_text=f"random init {baseline[key]:.3g}", annotation_position="top left")
        if chance is not None:
            fig.add_hline(y=chance, line_dash="dot", line_color="#d62728", row=row, col=col,
                          annotation_text=f"chance {chance:.3g}", annotation_position="bottom right")
    fig.update_layout(template="plotly_white", height=760, margin=dict(t=60, b=40))
    return fig


def _progress_figure(runs: list[dict]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PC1 error (linear probe, °) during training",
                                                        "rotation retrieval top-1 during training"))
    for r in runs:
        points = r.get("progress") or []
        if not points:
            continue
        steps = [p["step"] for p in points]
        fig.add_trace(go.Scatter(x=steps, y=[p.get("pc1_angle_deg_mean") for p in points], mode="lines+markers",
                                 name=r["name"], legendgroup=r["name"]), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=[p.get("retrieval_top1") for p in points], mode="lines+markers",
                                 name=r["name"], legendgroup=r["name"], showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="training step")
    fig.update_layout(template="plotly_white", height=380, margin=dict(t=60, b=40))
    return fig


def _tradeoff_figure(points: list[dict], baseline: dict | None) -> go.Figure:
    fig = go.Figure()
    groups: dict[str, list[dict]] = {}
    for p in points:
        groups.setdefault(p.get("family", "CARE"), []).append(p)
    for family, pts in groups.items():
        pts = sorted(pts, key=lambda p: p["lam"])
        fig.add_trace(go.Scatter(
            x=[p.get("retrieval_top1") for p in pts], y=[p.get("pc1_angle_deg_mean") for p in pts],
            mode="lines+markers+text", text=[f"λ={p['lam']:g}" for p in pts], textposition="top center",
            name=family,
        ))
    if baseline and baseline.get("retrieval_top1") is not None:
        fig.add_trace(go.Scatter(x=[baseline["retrieval_top1"]], y=[baseline.get("pc1_angle_deg_mean")],
                                 mode="markers+text", text=["random init"], textposition="bottom center",
                                 marker=dict(symbol="x", size=12, color="#7f7f7f"), name="random init"))
    fig.update_layout(title="Trade-off: PC1 error against rotation retrieval, one point per λ",
                      xaxis_title="retrieval top-1 (higher is better)", yaxis_title="PC1 error, ° (lower is better)",
                      template="plotly_white", height=420)
    return fig


def _training_curves(runs: list[dict]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "equivariance term"))
    for r in runs:
        curve = r.get("curve") or {}
        if curve.get("step"):
            fig.add_trace(go.Scatter(x=curve["step"], y=curve.get("loss"), name=r["name"], legendgroup=r["name"]),
                          row=1, col=1)
            if any(v is not None for v in curve.get("equivariance", [])):
                fig.add_trace(go.Scatter(x=curve["step"], y=curve["equivariance"], name=r["name"],
                                         legendgroup=r["name"], showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(template="plotly_white", height=340, margin=dict(t=60, b=40))
    return fig


# --------------------------------------------------------------------------- page


def _table(runs: list[dict], baseline: dict | None) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in TABLE_COLUMNS)
    rows = []
    for r in runs:
        cells = "".join(f"<td>{_fmt(r['metrics'].get(k), f)}</td>" for k, _, f in TABLE_COLUMNS)
        seconds = r.get("train_seconds")
        rows.append(
            f"<tr><th>{html.escape(r['name'])}</th><td>{html.escape(str(r.get('loss', '')))}</td>"
            f"<td>{html.escape(str(r.get('lam', '–')))}</td><td>{r.get('steps', '–')}</td>"
            f"<td>{_fmt(seconds, '{:.0f}')}</td>{cells}</tr>"
        )
    if baseline:
        cells = "".join(f"<td>{_fmt(baseline.get(k), f)}</td>" for k, _, f in TABLE_COLUMNS)
        rows.append(f"<tr class='baseline'><th>random init</th><td>–</td><td>–</td><td>0</td><td>–</td>{cells}</tr>")
    return (
        "<table><thead><tr><th>run</th><th>loss</th><th>λ</th><th>steps</th><th>train s</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _claims(claims: list[dict]) -> str:
    if not claims:
        return ""
    items = "".join(
        f"<li class='{'ok' if c['holds'] else 'no'}'><b>{'holds' if c['holds'] else 'does not hold'}</b>: "
        f"{html.escape(c['claim'])} <span class='evidence'>({html.escape(c['evidence'])})</span></li>"
        for c in claims
    )
    return f"<h2>The paper's claims on these structures</h2><ul class='claims'>{items}</ul>"


def _stability(items: list[dict]) -> str:
    """Whether each CARE run kept the rotation during training (``results["stability"]``)."""
    if not items:
        return ""
    rows = "".join(
        f"<li class='{'ok' if s['kept'] else 'no'}'><b>{'kept' if s['kept'] else 'losing it'}</b>: {html.escape(s['text'])}</li>"
        for s in items
    )
    return f"<h2>Did CARE keep the rotation during training?</h2><ul class='claims'>{rows}</ul>"


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1500px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:12px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
thead th{background:#f3f3f3;text-align:center}tbody th{text-align:left}tr.baseline{color:#666;font-style:italic}
.claims li{margin:4px 0}.claims .ok b{color:#2a7a2a}.claims .no b{color:#b22}.evidence{color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:8px}.meta{color:#555;font-size:13px}
"""


def render_report(results: dict, trajectories: dict[str, Trajectories]) -> str:
    """The report page as a string (plotly.js embedded once, so it opens offline)."""
    runs = results["runs"]
    baseline = results.get("baseline")
    figures: list[tuple[str, go.Figure]] = []
    if trajectories:
        panels = [(name, traj) for name, traj in trajectories.items()]
        projections = [project_trajectories(traj, 2, center_each_protein=True) for _, traj in panels]
        figures.append(("a", trajectory_figure(
            panels, projections=projections,
            title="(a) Trajectories of three test proteins rotated 0 → 2π about x, y, z "
                  "(one PCA per run, each protein centred on its own mean)")))
    parts = []
    first = True

    def embed(fig: go.Figure) -> str:
        nonlocal first
        out = fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})
        first = False
        return out

    meta = results.get("meta", {})
    meta_line = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in meta.items())
    parts.append(f"<h1>{html.escape(results.get('title', 'protein-care: CARE vs invariant objectives on PDB structures'))}</h1>")
    parts.append(f"<p class='meta'>{meta_line}</p>")
    parts.append(_claims(results.get("claims", [])))
    parts.append(_stability(results.get("stability", [])))
    parts.append("<h2>Numbers (held-out split)</h2>" + _table(runs, baseline))
    parts.append(f"<p class='meta'>PC1 chance level: {results.get('pc1_chance_deg', math.degrees(1.0)):.1f}° "
                 f"(a random direction). Retrieval chance: {_fmt(results.get('retrieval_chance'), '{:.3f}')}.</p>")
    for _, fig in figures:
        parts.append(embed(fig))
    parts.append(embed(_bars_figure(runs, baseline, results)))
    if any(r.get("progress") for r in runs):
        parts.append("<h2>During training</h2>" + embed(_progress_figure(runs)))
    if results.get("tradeoff"):
        parts.append("<h2>λ trade-off</h2>" + embed(_tradeoff_figure(results["tradeoff"], baseline)))
    if any((r.get("curve") or {}).get("step") for r in runs):
        parts.append("<h2>Training curves</h2>" + embed(_training_curves(runs)))
    notes = results.get("notes")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>protein-care report</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def write_report(out_dir) -> Path:
    """Render ``out_dir/results.json`` (+ ``trajectories/*.npz``) to ``out_dir/report.html``."""
    out_dir = Path(out_dir)
    results = json.loads((out_dir / RESULTS_NAME).read_text())
    trajectories = {}
    for r in results["runs"]:
        path = out_dir / TRAJECTORY_DIR / f"{r['slug']}.npz"
        if path.is_file():
            trajectories[r["name"]] = load_trajectories(path)
    return write_text_atomic(out_dir / REPORT_NAME, render_report(results, trajectories))

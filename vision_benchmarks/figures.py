"""Plotly figures of the paper's image measurements, written as self-contained HTML.

Every figure takes ``runs``: a mapping run label → that run's data (one run or several
to compare), so ``vision-benchmarks evaluate`` (one run) and ``vision-benchmarks sweep``
(several) draw the same pictures:

- :func:`augmentation_scatter`: W_f or γ_f per sampled augmentation, one column per run,
  coloured by augmentation type, the same augmentation joined across runs (Fig. 2c/3);
- :func:`training_curve_figure`: mean (and median) γ_f at the saved snapshots, and the alignment
  (L_inv) part of the loss per epoch (Fig. 5);
- :func:`cosine_histogram_figure`: density of cos(f(x), f(a(x))) per augmentation type,
  with σ² (Fig. 6);
- :func:`retrieval_figure`: the colour-jitter retrieval mosaic (Fig. 4);
- :func:`lambda_sweep_figure`, :func:`ablation_figure`: accuracy vs λ (Fig. 8) and per
  loss (Fig. 7).

:func:`write_html` embeds plotly.js (no network needed to view) and writes atomically.
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from data_pipeline.atomic_files import write_text_atomic
from vision_benchmarks.measure import AUGMENTATION_TYPES

TYPE_COLOURS = dict(zip(AUGMENTATION_TYPES, ("#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#9467bd", "#d62728")))
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """``fig`` as one HTML file with plotly.js inline, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return path


def augmentation_scatter(runs: dict[str, list[dict]], metric: str, title: str) -> go.Figure:
    """``metric`` (``wahba_error`` or ``gamma``) of each augmentation record per run."""
    fig = go.Figure()
    labels = list(runs)
    shown: set[str] = set()
    offsets = {t: (k - (len(AUGMENTATION_TYPES) - 1) / 2) * 0.06 for k, t in enumerate(AUGMENTATION_TYPES)}
    if len(labels) > 1:  # the same augmentation (same index) across runs
        for index in range(max(len(r) for r in runs.values())):
            xs, ys = [], []
            for i, label in enumerate(labels):
                rec = next((r for r in runs[label] if r["index"] == index), None)
                if rec is not None and rec[metric] is not None:
                    xs.append(i + offsets[rec["type"]])
                    ys.append(rec[metric])
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="lightgrey", width=1),
                                     hoverinfo="skip", showlegend=False))
    for kind in AUGMENTATION_TYPES:
        xs, ys, text = [], [], []
        for i, label in enumerate(labels):
            for rec in runs[label]:
                if rec["type"] == kind and rec[metric] is not None:
                    xs.append(i + offsets[kind])
                    ys.append(rec[metric])
                    text.append(f"{label}: augmentation {rec['index']} ({kind})")
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=kind, text=text, legendgroup=kind,
                                     marker=dict(color=TYPE_COLOURS[kind], size=9), showlegend=kind not in shown))
            shown.add(kind)
    for i, label in enumerate(labels):  # the mean per run
        values = [r[metric] for r in runs[label] if r[metric] is not None]
        if values:
            mean = sum(values) / len(values)
            fig.add_trace(go.Scatter(x=[i - 0.25, i + 0.25], y=[mean, mean], mode="lines", showlegend=i == 0,
                                     name="mean", line=dict(color="black", dash="dash")))
    axis = {"wahba_error": "Wahba error W_f / √n", "gamma": "relative equivariance γ_f"}.get(metric, metric)
    fig.update_layout(title=title, yaxis_title=axis, template="plotly_white",
                      xaxis=dict(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels))
    if metric == "gamma":  # γ_f spans decades (near-identity augmentations blow it up)
        fig.update_yaxes(type="log")
    return fig


def training_curve_figure(curves: dict[str, list[dict]], histories: dict[str, list[dict]], title: str) -> go.Figure:
    """Left: mean (solid, the paper's) and median (dotted) γ_f per snapshot epoch; right:
    the alignment loss per epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("relative equivariance γ_f (lower: more equivariant)",
                                                        "invariance loss L_inv (alignment part of InfoNCE)"))
    for k, label in enumerate(curves):
        colour = RUN_COLOURS[k % len(RUN_COLOURS)]
        for stat, dash in (("gamma_mean", "solid"), ("gamma_median", "dot")):
            points = [p for p in curves[label] if p.get(stat) is not None]
            fig.add_trace(go.Scatter(x=[p["epoch"] for p in points], y=[p[stat] for p in points],
                                     mode="lines+markers", name=f"{label} ({stat.split('_')[1]})", legendgroup=label,
                                     line=dict(color=colour, dash=dash)), row=1, col=1)
        history = [h for h in histories.get(label, []) if "alignment" in h]
        if history:
            fig.add_trace(go.Scatter(x=[h["epoch"] for h in history], y=[h["alignment"] for h in history],
                                     mode="lines+markers", name=label, legendgroup=label, showlegend=False,
                                     line=dict(color=colour)), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title=title, template="plotly_white")
    return fig


def cosine_histogram_figure(runs: dict[str, list[dict]], bins: int, title: str) -> go.Figure:
    """Density of cos(f(x), f(a(x))) per augmentation type, runs overlaid; σ² in the legend."""
    kinds = [t for t in AUGMENTATION_TYPES if any(r["type"] == t for recs in runs.values() for r in recs)]
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=kinds, shared_yaxes=True)
    width = 2.0 / bins
    centres = [-1.0 + width * (i + 0.5) for i in range(bins)]
    for k, label in enumerate(runs):
        colour = RUN_COLOURS[k % len(RUN_COLOURS)]
        for col, kind in enumerate(kinds, start=1):
            recs = [r for r in runs[label] if r["type"] == kind]
            counts = [sum(r["cos_hist"][i] for r in recs) for i in range(bins)]
            total = sum(counts) or 1
            var = sum(r["cos_var"] for r in recs) / max(1, len(recs))
            fig.add_trace(go.Bar(x=centres, y=[c / total / width for c in counts], width=width, opacity=0.6,
                                 marker_color=colour, name=f"{label} ({kind}: σ²={var:.2g})", legendgroup=label),
                          row=1, col=col)
    fig.update_xaxes(range=[-1, 1], title_text="cos(f(x), f(a(x)))")
    fig.update_yaxes(title_text="density", row=1, col=1)
    fig.update_layout(title=title, barmode="overlay", template="plotly_white")
    return fig


def retrieval_figure(mosaic, title: str) -> go.Figure:
    """An ``(H, W, 3)`` uint8 image grid (see :func:`vision_benchmarks.flowers.mosaic`)."""
    fig = go.Figure(go.Image(z=mosaic))
    fig.update_layout(title=title, xaxis=dict(visible=False), yaxis=dict(visible=False), template="plotly_white",
                      height=max(300, int(mosaic.shape[0] * 2.2)), width=max(500, int(mosaic.shape[1] * 2.2)))
    return fig


def lambda_sweep_figure(groups: dict[str, dict], metric: str, title: str) -> go.Figure:
    """Accuracy vs λ (log axis) per group ``{"points": [(λ, mean, std, run)], "baselines":
    [(mean, run)]}``; a baseline (λ-free objective, e.g. SimCLR) is a dashed line."""
    fig = go.Figure()
    for k, (label, group) in enumerate(groups.items()):
        colour = RUN_COLOURS[k % len(RUN_COLOURS)]
        points = sorted(group["points"])
        if points:
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=label,
                                     mode="lines+markers", line=dict(color=colour), text=[p[3] for p in points],
                                     error_y=dict(type="data", array=[p[2] for p in points], visible=True)))
        for mean, run in group["baselines"]:
            fig.add_hline(y=mean, line=dict(color=colour, dash="dash"), annotation_text=f"{label}: {run}")
    fig.update_layout(title=title, xaxis=dict(type="log", title="λ (weight of L_equi)"), yaxis_title=metric,
                      template="plotly_white")
    return fig


def ablation_figure(groups: dict[str, list[tuple[str, float, float, str]]], metric: str, title: str) -> go.Figure:
    """One bar per run ``(label, mean, std, run)``, grouped (e.g. per data set)."""
    fig = go.Figure()
    for k, (group, bars) in enumerate(groups.items()):
        fig.add_trace(go.Bar(x=[b[0] for b in bars], y=[b[1] for b in bars], name=group, text=[b[3] for b in bars],
                             marker_color=RUN_COLOURS[k % len(RUN_COLOURS)],
                             error_y=dict(type="data", array=[b[2] for b in bars], visible=True)))
    fig.update_layout(title=title, yaxis_title=metric, barmode="group", template="plotly_white")
    return fig

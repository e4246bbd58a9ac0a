"""The page: controls on the left, trajectories and the point cloud on the right, the
runs' evaluation numbers and training curves below. Component IDs are the contract with
:mod:`.callbacks` and the browser test."""

from __future__ import annotations

from pathlib import Path

from dash import dcc, html

from apps.trajectory_explorer.data import ExplorerData
from apps.trajectory_explorer.inputs import MAX_STEPS
from apps.trajectory_explorer.uploads import format_size, new_session_id
from apps.trajectory_explorer.views import protein_options, slider_settings

DEFAULT_STEPS = 64
GRAPH_CONFIG = {"displaylogo": False}


def _field(label: str, *children, hint: str | None = None) -> html.Div:
    parts = [html.Label(label, className="field-label"), *children]
    if hint:
        parts.append(html.Div(hint, className="hint"))
    return html.Div(parts, className="field")


def build_layout(data: ExplorerData) -> html.Div:
    """The page; built on each page load (a fresh upload session, unless the tab's
    sessionStorage already holds one)."""
    first = data.ids[0] if data.ids else None
    top, marks, value = slider_settings(DEFAULT_STEPS)
    controls = html.Div(
        [
            _field("Runs", dcc.Checklist(id="runs", options=data.run_options(), value=list(data.runs),
                                         className="checklist", inputClassName="check")),
            _field("Protein", dcc.Dropdown(id="protein", options=protein_options(data, "", first), value=first,
                                           searchable=True, clearable=False, placeholder="type an ID to search"),
                   hint=f"{len(data.ids)} clouds in {Path(str(getattr(data.store, 'path', 'the store'))).name}"),
            _field(
                "Or upload a structure",
                html.Div(
                    dcc.Upload(
                        id="upload",
                        children=html.Div(["Drop a file here or ", html.A("choose one")]),
                        max_size=data.max_upload_bytes, multiple=False, className="upload",
                    ),
                    id="upload-box", **{"data-max-bytes": str(data.max_upload_bytes)},
                ),
                dcc.Loading(html.Div(id="upload-message", className="message"), type="dot", delay_show=200),
                hint=f".cif, .cif.gz, .pdb or .pdb.gz, at most {format_size(data.max_upload_bytes)} and "
                     f"{data.max_points:,} points; read with the pipeline's policy ({data.selection.upper()} atoms "
                     "of model 1); visible to this browser tab only",
            ),
            _field("Rotation axis",
                   dcc.RadioItems(id="axis", options=[{"label": a, "value": a} for a in ("x", "y", "z")]
                                  + [{"label": "custom", "value": "custom"}], value="z", inline=True,
                                  className="radio"),
                   dcc.Input(id="custom-axis", type="text", value="1 1 0", debounce=True, placeholder="e.g. 1 1 0",
                             className="text-input"),
                   hint="custom: a direction as three numbers (normalised)"),
            _field("Steps per turn",
                   dcc.Input(id="steps", type="number", min=2, max=MAX_STEPS, step=1, value=DEFAULT_STEPS,
                             debounce=True, className="text-input"),
                   hint=f"angles from 0 to 360° inclusive (2 to {MAX_STEPS})"),
            _field("Angle", dcc.Slider(id="angle", min=0, max=top, step=1, value=value, marks=marks,
                                       allow_direct_input=False, updatemode="mouseup")),
            _field(
                "Export",
                dcc.RadioItems(id="export-which", options=[{"label": " 2-D trajectories", "value": "traj2d"},
                                                           {"label": " 3-D trajectories", "value": "traj3d"},
                                                           {"label": " point cloud", "value": "cloud"}],
                               value="traj2d", className="radio-stack"),
                html.Div([html.Button("HTML", id="export-html", n_clicks=0, className="button"),
                          html.Button("PNG", id="export-png", n_clicks=0, className="button")], className="buttons"),
                dcc.Loading(html.Div(id="export-message", className="message"), type="dot", delay_show=200),
                dcc.Download(id="download"),
            ),
        ],
        className="controls",
    )
    main = html.Div(
        [
            html.Div(id="status", className="status"),
            dcc.Loading(
                id="loading", type="circle", delay_show=250,
                children=html.Div(
                    [
                        html.Div([dcc.Graph(id="traj-2d", config=GRAPH_CONFIG)], className="panel wide"),
                        html.Div([dcc.Graph(id="cloud", config=GRAPH_CONFIG)], className="panel narrow"),
                        html.Div([dcc.Graph(id="traj-3d", config=GRAPH_CONFIG)], className="panel full"),
                    ],
                    className="graphs",
                ),
            ),
            html.H3("Evaluation (metrics.json of protein-care evaluate)"),
            html.Div(id="evaluation", className="cards"),
            html.H3("Training curves (metrics.jsonl)"),
            dcc.Graph(id="curves", config=GRAPH_CONFIG),
        ],
        className="main",
    )
    header = html.Header(
        [html.H1("protein-care · trajectory explorer"),
         html.Span(f"{len(data.runs)} run(s) · store {getattr(data.store, 'path', '')} · device {data.device}",
                   className="subtitle")],
    )
    stores = [dcc.Store(id="uploads-version", data=0),
              dcc.Store(id="session", data=new_session_id(), storage_type="session")]
    return html.Div([header, html.Div([controls, main], className="page"), *stores])

"""Dash callbacks: each one reads the controls and returns what a function of
:mod:`.views` computes. No logic lives here. ``session`` (a ``dcc.Store`` in the tab's
sessionStorage) names the page's uploads."""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx, html

from apps.trajectory_explorer import views
from apps.trajectory_explorer.data import ExplorerData

#: The controls (their ``value``) that decide the figures: render and export read the same.
CHOICES = ("runs", "protein", "axis", "custom-axis", "steps", "angle")


def _message(text: str, error: bool):
    return html.Span(text, className="error" if error else "ok") if text else ""


def register_callbacks(app: dash.Dash, data: ExplorerData) -> None:
    @app.callback(
        Output("angle", "max"), Output("angle", "marks"), Output("angle", "value"),
        Input("steps", "value"), State("angle", "max"), State("angle", "value"),
    )
    def update_slider(steps, old_max, old_value):
        return views.slider_settings(steps, old_max, old_value)

    @app.callback(
        Output("protein", "options"),
        Input("protein", "search_value"), Input("uploads-version", "data"), Input("session", "data"),
        State("protein", "value"),
    )
    def update_protein_options(search, _version, session, current):
        return views.protein_options(data, search, current, session=session)

    @app.callback(
        Output("protein", "value"), Output("upload-message", "children"), Output("uploads-version", "data"),
        Input("upload", "contents"), State("upload", "filename"), State("uploads-version", "data"),
        State("session", "data"),
        prevent_initial_call=True,
    )
    def upload(contents, filename, version, session):
        result = views.handle_upload(data, contents, filename, session)
        if result.protein_key is None:
            return dash.no_update, _message(result.message, result.error), dash.no_update
        return result.protein_key, _message(result.message, False), (version or 0) + 1

    @app.callback(
        Output("traj-2d", "figure"), Output("traj-3d", "figure"), Output("cloud", "figure"),
        Output("status", "children"),
        *[Input(c, "value") for c in CHOICES], State("session", "data"),
    )
    def render(run_keys, protein, axis, custom, steps, angle, session):
        v = views.render_views(data, run_keys, protein, axis, custom, steps, angle, session=session)
        return v.traj2d, v.traj3d, v.cloud, _message(v.status, v.error)

    @app.callback(Output("evaluation", "children"), Output("curves", "figure"), Input("runs", "value"))
    def evaluation(run_keys):
        return views.evaluation_panel(data, run_keys), views.curves(data, run_keys)

    @app.callback(
        Output("download", "data"), Output("export-message", "children"),
        Input("export-html", "n_clicks"), Input("export-png", "n_clicks"),
        State("export-which", "value"), *[State(c, "value") for c in CHOICES], State("session", "data"),
        prevent_initial_call=True,
    )
    def export(_html, _png, which, run_keys, protein, axis, custom, steps, angle, session):
        fmt = "png" if ctx.triggered_id == "export-png" else "html"
        download, message, error = views.export_view(data, which, fmt, run_keys, protein, axis, custom, steps, angle,
                                                      session=session)
        return (download if download is not None else dash.no_update), _message(message, error)

"""The sparsity explorer of chapter 05: move the sparsity, pick the scope, watch accuracy, the
stored bytes in each format, and the sparsity each layer gets.

:func:`explorer_data` is the pure update function: a sweep point (from
:func:`effkit.prune.sweeps.sweep_point`) and the sweep's curves in, the figure's data out.
:func:`explorer_figure` draws it, :func:`sparsity_explorer` wires ipywidgets to it (evaluating
missing points on a small subset, a few seconds each, remembered), and
:func:`sparsity_slider_figure` is the static version for the book (a plotly slider over the
precomputed sweep).
"""
from __future__ import annotations

import re

from ..ui import figure_widget, format_bytes, has_anywidget, show_in, sync_widget_state
from .masks import SCOPES, check_scope, check_sparsity
from .sweeps import sweep_point

FORMAT_LABELS = {"dense": "dense", "csr": "CSR (int64)", "csr-int32": "CSR (int32)", "bitmask": "bitmask"}
SCOPE_COLORS = {"layer": "#1f77b4", "global": "#ff7f0e"}
SPARSITIES = tuple(round(0.05 * i, 2) for i in range(20))      # 0.00 .. 0.95, the slider's stops


def short_name(name: str) -> str:
    """``bert.encoder.layer.3.attention.self.query.weight`` -> ``L3 query`` (the bar labels)."""
    match = re.search(r"layer\.(\d+)\.(.*)\.weight$", name)
    if not match:
        return name.removesuffix(".weight")
    part = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
            "attention.output.dense": "attn out", "intermediate.dense": "ffn in",
            "output.dense": "ffn out"}.get(match.group(2), match.group(2))
    return f"L{match.group(1)} {part}"


# ================================================================ the explorer: pure data
def curves_of(points) -> dict:
    """``{scope: {"x": sparsities, "y": accuracies}}`` from sweep points (a list of dicts or a
    DataFrame), each scope sorted by sparsity."""
    rows = points.to_dict("records") if hasattr(points, "to_dict") else list(points)
    out = {}
    for scope in SCOPES:
        mine = sorted((r["sparsity"], r["accuracy"]) for r in rows if r["scope"] == scope)
        if mine:
            out[scope] = {"x": [s for s, _ in mine], "y": [a for _, a in mine]}
    return out


def explorer_data(point: dict, curves: dict, dense_accuracy: float) -> dict:
    """Everything the explorer draws for one sweep ``point`` (no plotting, no model).

    point: ``{"scope", "sparsity", "accuracy", "overall", "layers", "bytes"}`` (a sweep point);
    curves: :func:`curves_of` the sweep; dense_accuracy: the unpruned model on the same reviews.
    Returns ``{"title", "marker": {"x", "y"}, "formats", "bytes", "byte_labels", "layers",
    "layer_sparsity", "curves", "dense_accuracy"}``.
    """
    scope, s = check_scope(point["scope"]), check_sparsity(point["sparsity"])
    formats = [f for f in FORMAT_LABELS if f in point["bytes"]]
    smallest = min(formats, key=lambda f: point["bytes"][f])
    drop = 100 * (dense_accuracy - point["accuracy"])
    title = (f"{scope} magnitude pruning at {s:.0%}: accuracy {point['accuracy']:.3f} "
             f"({drop:+.1f} points below dense); smallest: {FORMAT_LABELS[smallest]}, "
             f"{format_bytes(point['bytes'][smallest])}")
    names = list(point["layers"])
    return {"title": title, "marker": {"x": [s], "y": [point["accuracy"]]},
            "formats": [FORMAT_LABELS[f] for f in formats],
            "bytes": [point["bytes"][f] / 2 ** 20 for f in formats],
            "byte_labels": [format_bytes(point["bytes"][f]) for f in formats],
            "layers": [short_name(n) for n in names],
            "layer_sparsity": [point["layers"][n] for n in names],
            "curves": curves, "dense_accuracy": dense_accuracy}


def _trace_arrays(data: dict) -> list[dict]:
    """x/y/text of the traces that change with the slider, in figure order: the marker on the
    accuracy curves, the byte bars, the per-layer bars."""
    return [{"x": data["marker"]["x"], "y": data["marker"]["y"], "text": []},
            {"x": data["formats"], "y": data["bytes"], "text": data["byte_labels"]},
            {"x": data["layers"], "y": data["layer_sparsity"], "text": []}]


def explorer_figure(data: dict, widget: bool = False):
    """Three panels: accuracy against sparsity (each scope's sweep, the dense model dotted, the
    current point marked); the prunable weights' MiB in each format; the sparsity of each weight
    matrix. ``widget=True`` gives a FigureWidget of the finished figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, column_widths=[0.32, 0.2, 0.48], horizontal_spacing=0.07,
                        subplot_titles=("accuracy", "stored MiB (pruned weights)", "sparsity per weight matrix"))
    arrays = _trace_arrays(data)
    fig.add_trace(go.Scatter(name="current", mode="markers", marker={"size": 13, "color": "#d62728",
                                                                      "symbol": "diamond"},
                             x=arrays[0]["x"], y=arrays[0]["y"]), 1, 1)
    fig.add_trace(go.Bar(name="MiB", marker_color=["#7f7f7f", "#1f77b4", "#17becf", "#2ca02c"][:len(arrays[1]["x"])],
                         textposition="outside", cliponaxis=False,
                         hovertemplate="%{x}: %{text}<extra></extra>", **arrays[1]), 1, 2)
    fig.add_trace(go.Bar(name="sparsity", marker_color="#9467bd", x=arrays[2]["x"], y=arrays[2]["y"],
                         hovertemplate="%{x}: %{y:.1%}<extra></extra>"), 1, 3)
    for scope, curve in data["curves"].items():
        fig.add_trace(go.Scatter(name=f"{scope} scope", mode="lines+markers", x=curve["x"], y=curve["y"],
                                 line={"color": SCOPE_COLORS[scope]}, legendgroup=scope), 1, 1)
    fig.add_hline(y=data["dense_accuracy"], line_dash="dot", row=1, col=1,
                  annotation_text="dense", annotation_position="bottom left")
    dense_mib = max(data["bytes"]) if data["bytes"] else 1
    fig.update_yaxes(range=[0.4, 1], title_text="accuracy", row=1, col=1)
    fig.update_xaxes(range=[-0.03, 1], tickformat=".0%", title_text="sparsity", row=1, col=1)
    fig.update_yaxes(range=[0, 1.25 * dense_mib], row=1, col=2)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=3)
    fig.update_xaxes(tickangle=-90, tickfont={"size": 8}, row=1, col=3)
    fig.update_layout(title={"text": data["title"], "font": {"size": 14}}, height=460, bargap=0.15,
                      legend={"orientation": "h", "x": 0, "y": -0.32})
    return figure_widget(fig) if widget else fig


def update_explorer(fig, data: dict) -> None:
    """Put new :func:`explorer_data` into a figure from :func:`explorer_figure`, in place (the
    curves stay); a FigureWidget's synced state (what a reloaded page draws) follows."""
    with fig.batch_update():
        for trace, arrays in zip(fig.data, _trace_arrays(data)):
            trace.x, trace.y = arrays["x"], arrays["y"]
            if arrays["text"]:
                trace.text = arrays["text"]
        fig.layout.title.text = data["title"]
    sync_widget_state(fig)


# ================================================================ widget and book figure
def sparsity_explorer(model, loader, sweep=None, sparsity: float = 0.5, scope: str = "global"):
    """A sparsity slider (0-95%) and a scope choice; each change prunes a copy of ``model`` by
    magnitude, evaluates it on ``loader`` (a small subset: a few seconds on a CPU; points already
    in ``sweep`` or already seen are not recomputed) and redraws accuracy, bytes and per-layer
    sparsity. The slider acts when released. Needs a running kernel; the book shows
    :func:`sparsity_slider_figure` instead."""
    import ipywidgets as W

    known = {(r["scope"], round(r["sparsity"], 2)): r for r in
             (sweep.to_dict("records") if sweep is not None else [])}

    def point(scope_: str, s: float) -> dict:
        key = (scope_, round(s, 2))
        if key not in known:
            known[key] = sweep_point(model, loader, s, scope_)
        return known[key]

    dense = point("global", 0.0)["accuracy"]
    live = has_anywidget()
    slider = W.FloatSlider(value=sparsity, min=0.0, max=0.95, step=0.05, description="sparsity",
                           readout_format=".0%", continuous_update=False)
    scope_w = W.Dropdown(options=list(SCOPES), value=check_scope(scope), description="scope")
    status = W.Label()

    def data_now() -> dict:
        return explorer_data(point(scope_w.value, slider.value), curves_of(list(known.values())), dense)

    fig = explorer_figure(data_now(), widget=live)
    view = fig if live else W.Output()

    def redraw(_change=None):
        status.value = "pruning and evaluating ..."
        data = data_now()
        if live:
            _replace_curves(fig, data)
        update_explorer(fig, data)
        status.value = ""
        if not live:
            show_in(view, fig)

    slider.observe(redraw, names="value")
    scope_w.observe(redraw, names="value")
    if not live:
        show_in(view, fig)
    box = W.VBox([W.HBox([slider, scope_w, status]), view])
    box.figure, box.sparsity, box.scope = fig, slider, scope_w
    return box


def _replace_curves(fig, data: dict) -> None:
    """Refresh the accuracy curves (a new point joins its scope's curve)."""
    with fig.batch_update():
        for trace in fig.data[3:]:
            curve = data["curves"].get(trace.name.removesuffix(" scope"))
            if curve:
                trace.x, trace.y = curve["x"], curve["y"]


def sparsity_slider_figure(sweep, scope: str = "global", start: float = 0.5):
    """The book's stand-in for :func:`sparsity_explorer`: one figure with a slider over the
    ``scope`` points of ``sweep`` (a :func:`~effkit.prune.sweeps.magnitude_sweep` DataFrame, which
    must hold sparsity 0, the dense model on the same reviews)."""
    check_scope(scope)
    rows = sweep[sweep.scope == scope].sort_values("sparsity")
    if rows.empty:
        raise ValueError(f"the sweep has no {scope!r} points")
    dense_rows = sweep[sweep.sparsity == 0]
    if dense_rows.empty:
        raise ValueError("the sweep needs a sparsity-0 point (the dense model on the same reviews)")
    dense, curves = float(dense_rows.accuracy.iloc[0]), curves_of(sweep)
    steps, first = [], None
    for point in rows.to_dict("records"):
        data = explorer_data(point, curves, dense)
        label = f"{point['sparsity']:.0%}"
        if first is None or abs(point["sparsity"] - start) < 1e-9:
            first, active = data, len(steps)
        arrays = _trace_arrays(data)
        steps.append({"label": label, "method": "update",
                      "args": [{"x": [a["x"] for a in arrays], "y": [a["y"] for a in arrays],
                                "text": [a["text"] for a in arrays]}, {"title.text": data["title"]},
                               [0, 1, 2]]})
    fig = explorer_figure(first)
    fig.update_layout(sliders=[{"active": active, "currentvalue": {"prefix": "sparsity = "},
                                "steps": steps, "pad": {"t": 110}}], height=600)
    return fig

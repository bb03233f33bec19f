"""The bits explorer of chapter 06: move the bits, watch the levels, the bytes and the accuracy.

:func:`explorer_data` is the pure update function: a weight and a :class:`~effkit.ptq.PTQSpec`
in, the figure's data out (a histogram of the weights that share one scale, the quantization
levels, the bytes). :func:`explorer_figure` draws it, :func:`bits_explorer` wires ipywidgets to it
and re-evaluates the model on a dev subset, and :func:`bits_slider_figure` is the static version
for the book (a plotly slider over a grid precomputed by :func:`effkit.ptq.run_grid`).
"""
from __future__ import annotations

import torch
from torch import nn

from .ptq import PTQSpec, accuracy_and_latency, quantized_copy
from .affine import GRANULARITIES, quantize
from .layers import QuantLinear
from ..ui import figure_widget, format_bytes, has_anywidget, show_in, sync_widget_state


# ================================================================ the explorer: pure data
def scale_slice(weight: torch.Tensor, spec: PTQSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, levels)``: the weights that share the first scale under ``spec`` and the float
    values their codes can take (the quantization grid of that scale). ``affine`` and ``nf4`` only."""
    from .nf4 import nf4_levels

    w = weight.detach().float()
    if spec.method == "nf4":
        block = w.reshape(-1, spec.blocksize)[0]
        return block, nf4_levels() * block.abs().max()
    if spec.method != "affine":
        raise ValueError(f"the explorer draws 'affine' and 'nf4' weights, got method={spec.method!r}")
    q = quantize(w, spec.bits, "symmetric", spec.granularity, spec.group_size)
    rows = w.reshape(q.scale.numel(), -1)
    qmax = 2 ** (spec.bits - 1) - 1
    return rows[0], torch.arange(-qmax, qmax + 1, dtype=torch.float32) * q.scale[0]


def explorer_data(weight: torch.Tensor, spec: PTQSpec, bins: int = 60,
                  accuracy: dict | None = None) -> dict:
    """Everything the explorer draws for ``weight`` quantized with ``spec`` (no plotting).

    Returns ``{"title", "hist_x", "hist_y", "levels", "error", "bytes": {"fp32", "quantized"},
    "accuracy"}``: bin centres and counts of the weights sharing the first scale, the level
    values, the relative error ``||w - w_hat|| / ||w||`` over the whole weight, the weight's bytes
    in fp32 and quantized (measured), and ``accuracy`` passed through (``{"fp32": a, "quantized": b}``).
    """
    values, levels = scale_slice(weight, spec)
    counts, edges = torch.histogram(values, bins=bins)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data = weight.detach().float()
    q = (QuantLinear.from_linear(layer, "nf4", blocksize=spec.blocksize, double_quant=spec.double_quant)
         if spec.method == "nf4" else
         QuantLinear.from_linear(layer, "affine", spec.bits, granularity=spec.granularity,
                         group_size=spec.group_size))
    w_hat = q.dequantized_weight()
    w = weight.detach().float()
    error = float((w - w_hat).norm() / w.norm())
    share = {"tensor": "the whole tensor", "channel": "output row 0",
             "group": f"group 0 ({spec.group_size} weights)"}
    where = f"block 0 ({spec.blocksize} weights)" if spec.method == "nf4" else share[spec.granularity]
    return {"title": f"{spec.label}: {len(levels)} levels on {where}; relative error {error:.4f}",
            "hist_x": ((edges[:-1] + edges[1:]) / 2).tolist(), "hist_y": counts.tolist(),
            "levels": levels.tolist(), "error": error,
            "bytes": {"fp32": 4 * weight.numel(), "quantized": q.qweight.stored_bytes()},
            "accuracy": accuracy}


def _level_lines(levels: list[float], height: float) -> tuple[list, list]:
    """x/y of vertical lines at ``levels`` as one scatter trace (None breaks the line)."""
    xs, ys = [], []
    for v in levels:
        xs += [v, v, None]
        ys += [0, height, None]
    return xs, ys


NO_ACCURACY = "no accuracy<br>measured for<br>this figure"


def _accuracy_text(value) -> str:
    return "" if value is None else f"{value:.3f}"


def _trace_arrays(data: dict) -> list[dict]:
    """The x/y/text of the four traces (histogram, levels, bytes, accuracy), in figure order."""
    lx, ly = _level_lines(data["levels"], max(data["hist_y"]) or 1)
    acc = data["accuracy"] or {}
    sizes = [data["bytes"]["fp32"], data["bytes"]["quantized"]]
    accuracy = [acc.get("fp32"), acc.get("quantized")]
    return [{"x": data["hist_x"], "y": data["hist_y"], "text": []}, {"x": lx, "y": ly, "text": []},
            {"x": ["fp32", "quantized"], "y": [b / 1024 for b in sizes], "text": [format_bytes(b) for b in sizes]},
            {"x": ["fp32", "quantized"], "y": accuracy, "text": [_accuracy_text(a) for a in accuracy]}]


def _has_accuracy(data: dict) -> bool:
    return any(v is not None for v in (data["accuracy"] or {}).values())


def explorer_figure(data: dict, widget: bool = False):
    """Three panels: weights with the levels drawn on them; the layer's KiB in fp32 and
    quantized; accuracy before and after (the bars carry their values; without an accuracy in
    ``data`` the panel says so). ``widget=True`` gives a FigureWidget of the finished figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, column_widths=[0.6, 0.2, 0.2],
                        subplot_titles=("weights sharing one scale, and the levels",
                                        "this layer (KiB)", "accuracy"))
    arrays = _trace_arrays(data)
    fig.add_trace(go.Bar(name="weights", marker_color="#9ecae1", x=arrays[0]["x"], y=arrays[0]["y"]), 1, 1)
    fig.add_trace(go.Scatter(name="levels", mode="lines", line={"color": "#d62728", "width": 1},
                             x=arrays[1]["x"], y=arrays[1]["y"]), 1, 1)
    fig.add_trace(go.Bar(name="KiB", marker_color=["#7f7f7f", "#1f77b4"], textposition="outside",
                         cliponaxis=False, hovertemplate="%{x}: %{text}<extra></extra>", **arrays[2]), 1, 2)
    fig.add_trace(go.Bar(name="accuracy", marker_color=["#7f7f7f", "#2ca02c"], textposition="auto",
                         hovertemplate="%{x}: %{text}<extra></extra>", **arrays[3]), 1, 3)
    fig.update_layout(title={"text": data["title"]}, showlegend=False, height=380, bargap=0.05)
    fig.update_yaxes(range=[0, 1.25 * data["bytes"]["fp32"] / 1024], row=1, col=2)
    fig.update_yaxes(range=[0, 1], row=1, col=3)
    fig.add_annotation(name="no accuracy", text=NO_ACCURACY, showarrow=False, x=0.5, y=0.5,
                       xref="x3 domain", yref="y3 domain", font={"color": "#7f7f7f"},
                       visible=not _has_accuracy(data))
    return figure_widget(fig) if widget else fig


def update_explorer(fig, data: dict) -> None:
    """Put new :func:`explorer_data` into a figure from :func:`explorer_figure`, in place; a
    FigureWidget's synced state (what a reloaded page draws) follows."""
    with fig.batch_update():
        for trace, arrays in zip(fig.data, _trace_arrays(data)):
            trace.x, trace.y = arrays["x"], arrays["y"]
            if arrays["text"]:
                trace.text = arrays["text"]
        fig.layout.title.text = data["title"]
        fig.update_annotations(visible=not _has_accuracy(data), selector={"name": "no accuracy"})
    sync_widget_state(fig)


# ================================================================ the explorer: widget and book figure
def bits_explorer(model: nn.Module, loader, layer: str = "bert.encoder.layer.0.intermediate.dense",
                  bits: int = 4):
    """Sliders for bits (2-8), method, granularity and group size; each change re-quantizes the
    whole model, re-evaluates it on ``loader`` (a dev subset: a few seconds on CPU) and redraws
    the weights of ``layer`` with their levels, the layer's bytes and the accuracy.
    The bits slider acts when released (each value is a re-evaluation). NF4 is 4-bit by
    definition: choosing it sets the slider to 4 and locks it (and granularity); going back to
    RTN restores the bits chosen before.
    Needs a running kernel; the book shows :func:`bits_slider_figure` instead."""
    import ipywidgets as W

    weight = model.get_submodule(layer).weight
    fp32 = accuracy_and_latency(model, loader)["accuracy"]
    live = has_anywidget()
    bits_w = W.IntSlider(value=bits, min=2, max=8, description="bits", continuous_update=False)
    method_w = W.Dropdown(options=["affine", "nf4"], value="affine", description="method")
    gran_w = W.Dropdown(options=list(GRANULARITIES), value="channel", description="granularity")
    group_w = W.Dropdown(options=[32, 64, 128], value=64, description="group size")
    status = W.Label()
    state = {"affine_bits": bits, "quiet": False}

    def current_spec() -> PTQSpec:
        if method_w.value == "nf4":
            return PTQSpec("nf4", blocksize=group_w.value)
        group = group_w.value if gran_w.value == "group" else None
        return PTQSpec("affine", bits_w.value, gran_w.value, group)

    def data_for(spec: PTQSpec) -> dict:
        quantized = accuracy_and_latency(quantized_copy(model, spec), loader)["accuracy"]
        return explorer_data(weight, spec, accuracy={"fp32": fp32, "quantized": quantized})

    fig = explorer_figure(data_for(current_spec()), widget=live)
    view = fig if live else W.Output()

    def redraw(_change=None):
        if state["quiet"]:
            return
        status.value = "quantizing and evaluating ..."
        update_explorer(fig, data_for(current_spec()))
        status.value = ""
        if not live:
            show_in(view, fig)

    def method_changed(_change=None):
        nf4 = method_w.value == "nf4"
        state["quiet"] = True                  # the bits change below is part of this one redraw
        try:
            if nf4:
                state["affine_bits"] = bits_w.value
                bits_w.value = PTQSpec("nf4").nominal_bits
            else:
                bits_w.value = state["affine_bits"]
        finally:
            state["quiet"] = False
        bits_w.disabled = gran_w.disabled = nf4
        redraw()

    for w in (bits_w, gran_w, group_w):
        w.observe(redraw, names="value")
    method_w.observe(method_changed, names="value")
    if not live:
        show_in(view, fig)
    box = W.VBox([W.HBox([bits_w, method_w]), W.HBox([gran_w, group_w, status]), view])
    box.figure, box.bits, box.method, box.granularity, box.group_size = fig, bits_w, method_w, gran_w, group_w
    return box


def bits_slider_figure(weight: torch.Tensor, grid, granularity: str = "channel",
                       group_size: int | None = None, start_bits: int = 4):
    """The book's stand-in for :func:`bits_explorer`: one figure with a slider over the bits of the
    RTN ``affine`` rows of ``grid`` (a :func:`run_grid` DataFrame) at ``granularity``; each step
    shows ``weight`` with that many levels, its bytes, and the accuracy measured in the grid."""
    fp32 = grid[grid.method == "fp32"]
    if fp32.empty:
        raise ValueError("grid has no fp32 row to compare with; include PTQSpec('fp32')")
    rows = grid[(grid.method == "affine") & (grid.granularity == granularity)].sort_values("bits")
    if rows.empty:
        raise ValueError(f"grid has no affine rows at granularity={granularity!r}")
    steps, first = [], None
    for _, row in rows.iterrows():
        spec = PTQSpec("affine", int(row.bits), granularity,
                       group_size if granularity == "group" else None)
        data = explorer_data(weight, spec, accuracy={"fp32": float(fp32.accuracy.iloc[0]),
                                                     "quantized": float(row.accuracy)})
        if first is None or spec.bits == start_bits:
            first = data
        arrays = _trace_arrays(data)
        steps.append({"label": str(spec.bits), "method": "update",
                      "args": [{"x": [a["x"] for a in arrays], "y": [a["y"] for a in arrays],
                                "text": [a["text"] for a in arrays]},
                               {"title.text": data["title"]}]})
    fig = explorer_figure(first)
    active = [s["label"] for s in steps].index(str(start_bits)) if str(start_bits) in [
        s["label"] for s in steps] else 0
    fig.update_layout(sliders=[{"active": active, "currentvalue": {"prefix": "bits = "},
                                "steps": steps}], height=450)
    return fig

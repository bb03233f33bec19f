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


def _trace_arrays(data: dict) -> list[dict]:
    """The x/y of the four traces (histogram, levels, bytes, accuracy), in figure order."""
    lx, ly = _level_lines(data["levels"], max(data["hist_y"]) or 1)
    acc = data["accuracy"] or {}
    return [{"x": data["hist_x"], "y": data["hist_y"]}, {"x": lx, "y": ly},
            {"x": ["fp32", "quantized"], "y": [data["bytes"]["fp32"] / 1024,
                                               data["bytes"]["quantized"] / 1024]},
            {"x": ["fp32", "quantized"], "y": [acc.get("fp32"), acc.get("quantized")]}]


def explorer_figure(data: dict, widget: bool = False):
    """Three panels: weights with the levels drawn on them; the layer's KiB in fp32 and
    quantized; accuracy before and after. ``widget=True`` gives a FigureWidget."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, column_widths=[0.6, 0.2, 0.2],
                        subplot_titles=("weights sharing one scale, and the levels",
                                        "this layer (KiB)", "accuracy"))
    arrays = _trace_arrays(data)
    fig.add_trace(go.Bar(name="weights", marker_color="#9ecae1", **arrays[0]), 1, 1)
    fig.add_trace(go.Scatter(name="levels", mode="lines", line={"color": "#d62728", "width": 1},
                             **arrays[1]), 1, 1)
    fig.add_trace(go.Bar(name="KiB", marker_color=["#7f7f7f", "#1f77b4"], **arrays[2]), 1, 2)
    fig.add_trace(go.Bar(name="accuracy", marker_color=["#7f7f7f", "#2ca02c"], **arrays[3]), 1, 3)
    fig.update_layout(title=data["title"], showlegend=False, height=380, bargap=0.05)
    fig.update_yaxes(range=[0, 1], row=1, col=3)
    if widget:
        fig = go.FigureWidget(fig)
    return fig


def update_explorer(fig, data: dict) -> None:
    """Put new :func:`explorer_data` into a figure from :func:`explorer_figure`, in place."""
    with fig.batch_update():
        for trace, arrays in zip(fig.data, _trace_arrays(data)):
            trace.x, trace.y = arrays["x"], arrays["y"]
        fig.layout.title.text = data["title"]


# ================================================================ the explorer: widget and book figure
def bits_explorer(model: nn.Module, loader, layer: str = "bert.encoder.layer.0.intermediate.dense",
                  bits: int = 4):
    """Sliders for bits (2-8), method, granularity and group size; each change re-quantizes the
    whole model, re-evaluates it on ``loader`` (a dev subset: a few seconds on CPU) and redraws
    the weights of ``layer`` with their levels, the layer's bytes and the accuracy.
    Needs a running kernel; the book shows :func:`bits_slider_figure` instead."""
    import ipywidgets as W

    from ..ui import has_anywidget, show_in

    weight = model.get_submodule(layer).weight
    fp32 = accuracy_and_latency(model, loader)["accuracy"]
    live = has_anywidget()
    bits_w = W.IntSlider(value=bits, min=2, max=8, description="bits")
    method_w = W.Dropdown(options=["affine", "nf4"], value="affine", description="method")
    gran_w = W.Dropdown(options=list(GRANULARITIES), value="channel", description="granularity")
    group_w = W.Dropdown(options=[32, 64, 128], value=64, description="group size")
    status = W.Label()

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
        bits_w.disabled = method_w.value == "nf4"            # NF4 is 4-bit by definition
        gran_w.disabled = method_w.value == "nf4"
        status.value = "quantizing and evaluating ..."
        update_explorer(fig, data_for(current_spec()))
        status.value = ""
        if not live:
            show_in(view, fig)

    for w in (bits_w, method_w, gran_w, group_w):
        w.observe(redraw, names="value")
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
                      "args": [{"x": [a["x"] for a in arrays], "y": [a["y"] for a in arrays]},
                               {"title.text": data["title"]}]})
    fig = explorer_figure(first)
    active = [s["label"] for s in steps].index(str(start_bits)) if str(start_bits) in [
        s["label"] for s in steps] else 0
    fig.update_layout(sliders=[{"active": active, "currentvalue": {"prefix": "bits = "},
                                "steps": steps}], height=450)
    return fig

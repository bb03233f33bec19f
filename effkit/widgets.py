"""Explorers: move a slider, watch memory and accuracy move (ipywidgets + plotly FigureWidget).

Live widgets need a running kernel, so each explorer also has a static plotly figure with a
slider over a precomputed sweep, for the book.
"""
from __future__ import annotations

# ================================================================ LoRA rank explorer (chapter 04)
from torch import nn

RANKS = (1, 2, 4, 8, 16, 32, 64)
# Where LoRA goes: the original paper's choice, every attention projection, and everything.
LORA_TARGETS = {
    "query, value": ("query", "value"),
    "all attention": ("query", "key", "value", "attention.output.dense"),
    "attention + feed-forward": ("query", "key", "value", "attention.output.dense",
                                 "intermediate.dense", r".*layer\.\d+\.output\.dense"),
}
BUDGET_PARTS = ("weights", "gradients", "optimizer_state", "adapter_file")
MIB = 2 ** 20


def lora_budget(model: nn.Module, targets, r: int, head=("classifier",)) -> dict:
    """What LoRA(r, targets) costs on ``model`` in fp32 with AdamW, counted, not trained.

    Returns ``{"r", "trainable", "trainable_pct", "weights", "gradients", "optimizer_state",
    "adapter_file"}`` (sizes in bytes): gradients 4 bytes and AdamW state 8 bytes (two moments)
    per trainable number, plus AdamW's 4-byte step counter per trainable tensor; the adapter file
    holds the trainable numbers (A, B and the head). ``model`` is not changed.
    """
    from .lora import find_modules, lora_parameter_count
    from .measure import count_parameters, tensor_bytes

    added = lora_parameter_count(model, targets, r)
    modules = dict(model.named_modules())
    head_params = [p for name in find_modules(model, head) for p in modules[name].parameters()]
    trainable = added + sum(p.numel() for p in head_params)
    tensors = 2 * len(find_modules(model, targets)) + len(head_params)
    total = count_parameters(model) + added
    return {"r": r, "trainable": trainable, "trainable_pct": 100 * trainable / total,
            "weights": tensor_bytes(model) + 4 * added, "gradients": 4 * trainable,
            "optimizer_state": 8 * trainable + 4 * tensors, "adapter_file": 4 * trainable}


def full_budget(model: nn.Module) -> dict:
    """The same parts for full fine-tuning (every parameter trains; the 'adapter' is the model)."""
    from .measure import count_parameters, tensor_bytes

    n = count_parameters(model)
    tensors = len(list(model.parameters()))
    return {"r": None, "trainable": n, "trainable_pct": 100.0, "weights": tensor_bytes(model),
            "gradients": 4 * n, "optimizer_state": 8 * n + 4 * tensors, "adapter_file": 4 * n}


def _bar_y(budget: dict) -> list[float]:
    return [budget[part] / MIB for part in BUDGET_PARTS]


def _check_rank(r) -> None:
    if r not in RANKS:
        raise ValueError(f"r must be one of {RANKS}, got {r!r}")


def _check_target_names(names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in LORA_TARGETS]
    if unknown or not names:
        raise ValueError(f"target choices must be among {list(LORA_TARGETS)}, got {names!r}")
    return names


def rank_figure(model: nn.Module, r: int = 8, target_names=tuple(LORA_TARGETS), widget: bool = False):
    """Bars of weights / gradients / optimizer state / adapter file (MiB, log axis): full
    fine-tuning beside LoRA at rank ``r`` for each target choice. ``widget=True`` gives a
    FigureWidget that :func:`update_rank_figure` can change in place."""
    import plotly.graph_objects as go

    _check_rank(r)
    names = _check_target_names(target_names)
    full = full_budget(model)
    labels = ["weights", "gradients", "optimizer state", "adapter file"]
    traces = [go.Bar(name="full fine-tuning", x=labels, y=_bar_y(full), marker_color="#7f7f7f")]
    traces += [go.Bar(name=f"LoRA on {n}", x=labels, y=_bar_y(lora_budget(model, LORA_TARGETS[n], r)))
               for n in names]
    fig = (go.FigureWidget if widget else go.Figure)(data=traces)
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="MiB (log scale)",
                      title=_rank_title(model, r, names), legend_title="method", height=430)
    return fig


def _rank_title(model, r, names) -> str:
    parts = [f"{n}: {lora_budget(model, LORA_TARGETS[n], r)['trainable']:,} trainable" for n in names]
    return f"LoRA r = {r}<br><sup>{' · '.join(parts)}</sup>"


def update_rank_figure(fig, model: nn.Module, r: int, target_names) -> None:
    """Redraw ``fig`` (from ``rank_figure(widget=True)``) for rank ``r`` and these target choices."""
    import plotly.graph_objects as go

    _check_rank(r)
    names = _check_target_names(target_names)
    labels = list(fig.data[0].x)
    with fig.batch_update():
        fig.data = fig.data[:1]  # keep the full fine-tuning bars
        for n in names:
            fig.add_trace(go.Bar(name=f"LoRA on {n}", x=labels,
                                 y=_bar_y(lora_budget(model, LORA_TARGETS[n], r))))
        fig.layout.title = _rank_title(model, r, names)


def rank_explorer(model: nn.Module, r: int = 8):
    """A rank slider, a target-module choice and the live bar chart (needs a running kernel).

    The chart is a plotly FigureWidget, updated in place. plotly 6+ builds FigureWidget on the
    ``anywidget`` package; without it the chart is redrawn into an ``ipywidgets.Output`` instead.
    """
    import ipywidgets as W

    live = _has_anywidget()
    fig = rank_figure(model, r, widget=live)
    view = fig if live else W.Output()
    slider = W.SelectionSlider(options=list(RANKS), value=r, description="rank r")
    choice = W.SelectMultiple(options=list(LORA_TARGETS), value=tuple(LORA_TARGETS),
                              description="targets", rows=3)

    def redraw(_change=None):
        if not choice.value:  # an empty selection has nothing to draw; keep the last one
            return
        update_rank_figure(fig, model, slider.value, choice.value)
        if not live:
            _show_in(view, fig)

    slider.observe(redraw, names="value")
    choice.observe(redraw, names="value")
    if not live:
        _show_in(view, fig)
    box = W.VBox([W.HBox([slider, choice]), view])
    box.figure, box.slider, box.choice = fig, slider, choice  # handles for tests and readers
    return box


def _has_anywidget() -> bool:
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True


def _show_in(output, fig) -> None:
    from IPython.display import display

    with output:
        output.clear_output(wait=True)
        display(fig)


def rank_slider_figure(model: nn.Module, ranks=RANKS, target_names=tuple(LORA_TARGETS), r: int = 8):
    """The static version for the book: one figure, a slider over ``ranks`` (all precomputed)."""
    for rank in ranks:
        _check_rank(rank)
    names = _check_target_names(target_names)
    fig = rank_figure(model, r, names)
    steps = []
    for rank in ranks:
        ys = [_bar_y(full_budget(model))] + [_bar_y(lora_budget(model, LORA_TARGETS[n], rank)) for n in names]
        steps.append({"label": str(rank), "method": "update",
                      "args": [{"y": ys}, {"title": _rank_title(model, rank, names)}]})
    fig.update_layout(sliders=[{"active": list(ranks).index(r) if r in ranks else 0,
                                "currentvalue": {"prefix": "rank r = "}, "steps": steps}])
    return fig

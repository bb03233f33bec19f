"""The LoRA rank explorer (chapter 04): move the rank, watch memory and accuracy move.

The memory bars are counted exactly, with no training. The accuracy comes from a
:class:`RankSweep`: short LoRA runs through :func:`effkit.compare.train_and_measure`, each cached.
Live widgets need a running kernel, so the book shows :func:`rank_slider_figure`, a static plotly
figure with a slider over the precomputed sweep.
"""
from __future__ import annotations

import math

from torch import nn

from .. import recipes
from ..baselines import data_spec, sentiment_loaders
from ..compare import train_and_measure
from ..measure import count_parameters, tensor_bytes
from ..targets import find_modules
from ..ui import figure_widget, format_bytes, has_anywidget, show_in, sync_widget_state
from .lora import ATTENTION, FEED_FORWARD, QUERY_VALUE, lora_parameter_count

RANKS = (1, 2, 4, 8, 16, 32, 64)
# Where LoRA goes: the original paper's choice, every attention projection, and everything.
LORA_TARGETS = {
    "query, value": QUERY_VALUE,
    "all attention": ATTENTION,
    "attention + feed-forward": ATTENTION + FEED_FORWARD,
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


# ---------------------------------------------------------------- accuracy: a small, cached sweep
class RankSweep:
    """LoRA at (target choice, rank), each trained once on a small subset and cached.

    ``point(name, r)`` trains the run (or loads it from the cache) and returns its row from
    ``effkit.compare.train_and_measure``; ``accuracy(name)`` is ``{r: test-subset accuracy}`` of
    the points known so far. Every point starts from the same pretrained ``model``.
    """

    def __init__(self, model: nn.Module, tokenizer, config=None, sizes: dict | None = None):
        self.model, self.config = model, config or recipes.rank_sweep()
        self.sizes = sizes or recipes.rank_sweep_sizes()
        self.loaders = sentiment_loaders(tokenizer, self.config, self.sizes)
        self.points: dict[tuple[str, int], dict] = {}

    def point(self, name: str, r: int, progress: bool = True) -> dict:
        _check_rank(r)
        _check_target_names([name])
        if (name, r) not in self.points:
            row = train_and_measure(self.model, "lora", self.loaders, self.config,
                                    data=data_spec("sequence", self.sizes), label=f"LoRA r={r} on {name}",
                                    timing_repeats=1, progress=progress,
                                    r=r, alpha=2 * r, targets=LORA_TARGETS[name])
            del row["model"]
            self.points[(name, r)] = row
        return self.points[(name, r)]

    def run(self, ranks=RANKS, target_names=("query, value",), progress: bool = True) -> "RankSweep":
        """Train (or load) every (target choice, rank) pair; returns self."""
        for name in _check_target_names(target_names):
            for r in ranks:
                self.point(name, r, progress)
        return self

    def accuracy(self, name: str) -> dict[int, float]:
        return {r: row["test_accuracy"] for (n, r), row in sorted(self.points.items()) if n == name}

    def frame(self):
        """The known points as a pandas DataFrame (one row per run)."""
        import pandas as pd

        return pd.DataFrame([{"targets": n, "r": r, **{k: v for k, v in row.items() if k != "evals"}}
                             for (n, r), row in sorted(self.points.items())])


# ---------------------------------------------------------------- the figure
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c")
BAR_LABELS = ["weights", "gradients", "optimizer state", "adapter file"]


def _bar(name: str, budget: dict, color: str, group: str):
    """One method's memory bars, each labelled with its size (no need to hover)."""
    import plotly.graph_objects as go

    return go.Bar(name=name, x=BAR_LABELS, y=_bar_y(budget), marker_color=color, legendgroup=group,
                  text=[format_bytes(budget[part]) for part in BUDGET_PARTS], textposition="outside",
                  textangle=-90, textfont={"size": 10}, cliponaxis=False,
                  hovertemplate="%{x}: %{text}<extra>" + name + "</extra>")


def rank_traces(model: nn.Module, r: int, target_names, sweep: RankSweep | None = None) -> list:
    """The figure's traces for rank ``r``: memory bars (full fine-tuning, then LoRA on each target
    choice) on the left axes; accuracy against rank of each choice's known sweep points and a
    line marking ``r`` on the right axes. Always ``2 * len(target_names) + 2`` traces."""
    import plotly.graph_objects as go

    _check_rank(r)
    names = _check_target_names(target_names)
    traces = [_bar("full fine-tuning", full_budget(model), "#7f7f7f", "full")]
    for n, color in zip(names, COLORS):
        traces.append(_bar(f"LoRA on {n}", lora_budget(model, LORA_TARGETS[n], r), color, n))
    for n, color in zip(names, COLORS):
        known = sweep.accuracy(n) if sweep is not None else {}
        traces.append(go.Scatter(name=f"accuracy, {n}", x=list(known), y=list(known.values()),
                                 mode="lines+markers", marker_color=color, legendgroup=n,
                                 showlegend=False, xaxis="x2", yaxis="y2"))
    traces.append(go.Scatter(name=f"r = {r}", x=[r, r], y=[0, 1], mode="lines", xaxis="x2", yaxis="y2",
                             line={"color": "black", "dash": "dot", "width": 1}, showlegend=False))
    return traces


def _memory_axis(model: nn.Module) -> dict:
    """The log MiB axis, the same at every rank and target choice (so the bars move, not the
    axis): decade ticks written out, and headroom above the largest bar for its label."""
    smallest = min(min(_bar_y(lora_budget(model, t, min(RANKS)))) for t in LORA_TARGETS.values())
    largest = max(_bar_y(full_budget(model)))
    low, high = math.floor(math.log10(smallest)), math.ceil(math.log10(largest))
    ticks = [10.0 ** k for k in range(low, high + 1)]
    return {"type": "log", "title": "MiB (log scale), fp32 + AdamW",
            "range": [math.log10(smallest) - 0.3, math.log10(largest) + 1.0],
            "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def _rank_layout(model: nn.Module, r: int, names, sweep) -> dict:
    return {"barmode": "group", "title": {"text": _rank_title(model, r, names)},
            "legend": {"title": {"text": "method"}}, "height": 480, "margin": {"t": 90},
            "xaxis": {"domain": [0, 0.58]}, "yaxis": _memory_axis(model),
            "xaxis2": {"domain": [0.7, 1], "type": "log", "tickvals": list(RANKS),
                       "ticktext": [str(k) for k in RANKS], "title": "rank r", "anchor": "y2"},
            "yaxis2": {"anchor": "x2", "range": [0.4, 1.0], "title": _accuracy_title(sweep)}}


def rank_figure(model: nn.Module, r: int = 8, target_names=tuple(LORA_TARGETS), widget: bool = False,
                sweep: RankSweep | None = None):
    """Left: bars of weights / gradients / optimizer state / adapter file (MiB, log axis, each bar
    labelled with its size) for full fine-tuning and LoRA at rank ``r`` on each target choice.
    Right: accuracy against rank from ``sweep`` (empty without one). ``widget=True`` gives a
    FigureWidget for :func:`update_rank_figure`, built from the finished figure in one step."""
    import plotly.graph_objects as go

    names = _check_target_names(target_names)
    fig = go.Figure(data=rank_traces(model, r, names, sweep), layout=_rank_layout(model, r, names, sweep))
    return figure_widget(fig) if widget else fig


def _accuracy_title(sweep) -> str:
    if sweep is None:
        return "accuracy (no sweep given)"
    return f"accuracy, {sweep.sizes['test']} test reviews"


def _rank_title(model, r, names) -> str:
    parts = [f"{n}: {lora_budget(model, LORA_TARGETS[n], r)['trainable']:,} trainable" for n in names]
    return f"LoRA r = {r}<br><sup>{' · '.join(parts)}</sup>"


def update_rank_figure(fig, model: nn.Module, r: int, target_names, sweep: RankSweep | None = None) -> None:
    """Redraw ``fig`` (from ``rank_figure(widget=True)``) for rank ``r`` and these target choices;
    a FigureWidget's synced state (what a reloaded page draws) follows."""
    traces = rank_traces(model, r, target_names, sweep)
    with fig.batch_update():
        fig.data = []
        fig.add_traces(traces)
        fig.layout.title.text = _rank_title(model, r, _check_target_names(target_names))
    sync_widget_state(fig)


def rank_explorer(model: nn.Module, r: int = 8, sweep: RankSweep | None = None,
                  target_names=("query, value",)):
    """A rank slider, a target-module choice and the live chart (needs a running kernel).

    With a ``sweep`` (:class:`RankSweep`), moving to a rank not trained yet for a chosen target
    trains it on the sweep's small subset first, with a progress bar, and caches it; the accuracy
    panel then gains the point. The slider acts when released, not at every rank dragged past
    (each would be a training run). The chart is a plotly FigureWidget, updated in place. plotly
    6+ builds FigureWidget on the ``anywidget`` package; without it the chart is redrawn into an
    ``ipywidgets.Output`` instead.
    """
    import ipywidgets as W

    live = has_anywidget()
    names = _check_target_names(target_names)
    slider = W.SelectionSlider(options=list(RANKS), value=r, description="rank r", continuous_update=False)
    choice = W.SelectMultiple(options=list(LORA_TARGETS), value=tuple(names), description="targets", rows=3)
    training = W.Output()                      # progress bars of runs being trained

    def train_missing():
        if sweep is None:
            return
        with training:
            training.clear_output()
            for n in choice.value:
                sweep.point(n, slider.value, progress=True)

    train_missing()
    fig = rank_figure(model, r, choice.value, widget=live, sweep=sweep)
    view = fig if live else W.Output()

    def redraw(_change=None):
        if not choice.value:  # an empty selection has nothing to draw; keep the last one
            return
        train_missing()
        update_rank_figure(fig, model, slider.value, choice.value, sweep)
        if not live:
            show_in(view, fig)

    slider.observe(redraw, names="value")
    choice.observe(redraw, names="value")
    if not live:
        show_in(view, fig)
    box = W.VBox([W.HBox([slider, choice]), training, view])
    box.figure, box.slider, box.choice = fig, slider, choice  # handles for tests and readers
    return box


def rank_slider_figure(model: nn.Module, ranks=RANKS, target_names=("query, value",), r: int = 8,
                       sweep: RankSweep | None = None):
    """The static version for the book: one figure, a slider over ``ranks``; the bars are counted
    for each rank and the accuracy panel shows the precomputed ``sweep``. Each step sets the
    bars, their labels, the rank marker (position and name) and the title."""
    for rank in ranks:
        _check_rank(rank)
    names = _check_target_names(target_names)
    steps = []
    for rank in ranks:
        traces = rank_traces(model, rank, names, sweep)
        steps.append({"label": str(rank), "method": "update",
                      "args": [{"x": [list(t.x) for t in traces], "y": [list(t.y) for t in traces],
                                "text": [list(t.text) if t.text is not None else [] for t in traces],
                                "name": [t.name for t in traces]},
                               {"title.text": _rank_title(model, rank, names)}]})
    fig = rank_figure(model, r, names, sweep=sweep)
    fig.update_layout(sliders=[{"active": list(ranks).index(r) if r in ranks else 0,
                                "currentvalue": {"prefix": "rank r = "}, "steps": steps, "pad": {"t": 50}}])
    return fig

"""What the notebooks' live parts share: plotly FigureWidgets whose synced state stays current,
redrawing into an Output, value labels, and progress bars that suit where the code runs.

plotly 6+ builds ``FigureWidget`` on the ``anywidget`` package. With it, an explorer updates its
figure in place; without it, the explorer redraws a static figure into an ``ipywidgets.Output``.
"""
from __future__ import annotations

import os
import sys
from copy import deepcopy


def has_anywidget() -> bool:
    """True when ``anywidget`` imports, so ``plotly.graph_objects.FigureWidget`` works."""
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True


def show_in(output, fig) -> None:
    """Replace what ``output`` (an ``ipywidgets.Output``) shows with ``fig``."""
    from IPython.display import display

    with output:
        output.clear_output(wait=True)
        display(fig)


# ---------------------------------------------------------------- FigureWidget state
# plotly's FigureWidget syncs two traitlets to the browser, ``_widget_data`` and
# ``_widget_layout``. plotly assigns them only when the widget is built and in its own
# ``_repr_mimebundle_``, which never runs for a widget shown inside an ipywidgets box. Later
# changes (``update_layout``, ``batch_update`` ...) reach the views already open as one-off
# messages, but the traitlets keep the old figure, and that old figure is what a reloaded page
# draws. So: build the whole figure first and wrap it once (``figure_widget``), and after every
# change copy the figure into the traitlets (``sync_widget_state``), as ``_repr_mimebundle_`` does.
# The browser side only stores the new state (plotly's JS model ignores a change of these two
# traitlets), so open views are not redrawn twice.
# Why not plotly's FigureWidget as it is: anywidget (0.11) gives a model 2 s from its creation in
# the browser to load its front-end module, and if it is late, every later message from the
# kernel to that model is dropped, silently (anywidget's ``_handle_comm_msg`` awaits a rejected
# ``ready``; JupyterLab swallows the error). plotly's module is its 5 MB bundle (plotly.js
# inside), evaluated once per FigureWidget. After a page reload every widget is restored at once
# and the second figure's bundle, sometimes the first's, lands past 2 s: the chart is drawn from
# the synced state but never redraws again. So effkit's FigureWidget ships a small module that is
# ready at once and loads plotly's bundle (sent alongside, as ``_plotly_esm``) when a view is
# drawn, where anywidget sets no deadline; the bundle is evaluated once per page. Everything else
# (the Python side, plotly's own view and messages) is plotly's FigureWidget unchanged.
_LAZY_PLOTLY_ESM = """
const bundles = (globalThis.__effkitPlotlyWidget ??= new Map());  // one evaluation per page

function plotlyModule(source) {
  if (!bundles.has(source)) {
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    bundles.set(source, import(url).finally(() => URL.revokeObjectURL(url)));
  }
  return bundles.get(source);
}

export default () => {
  let initModel, plotly;  // this model's initialize() handle; plotly's widget for it, made once
  return {
    initialize({ model }) { initModel = model; },
    async render({ model, el }) {
      plotly ??= plotlyModule(initModel.get("_plotly_esm")).then(async (mod) => {
        const widget = await mod.default();
        await widget.initialize({ model: initModel });
        return widget;
      });
      return (await plotly).render({ model, el });
    },
  };
};
"""
_figure_widget_class = None


def _lazy_figure_widget_class():
    """plotly's ``FigureWidget`` with the front-end module described above (made once)."""
    global _figure_widget_class
    if _figure_widget_class is None:
        import plotly.graph_objects as go
        import traitlets

        class FigureWidget(go.FigureWidget):
            _esm = _LAZY_PLOTLY_ESM
            _plotly_esm = traitlets.Unicode(str(go.FigureWidget._esm)).tag(sync=True)

        _figure_widget_class = FigureWidget
    return _figure_widget_class


def figure_widget(fig):
    """A ``FigureWidget`` of the finished ``fig`` (data and layout), built in one step; a
    ``plotly.graph_objects.FigureWidget`` whose front end stays live after a page reload."""
    return _lazy_figure_widget_class()(fig)


def sync_widget_state(fig) -> None:
    """Copy ``fig``'s current data and layout into the state its FigureWidget syncs to the
    browser (what a reloaded page draws). A plain ``go.Figure`` has no such state: no-op."""
    if hasattr(fig, "_widget_data"):
        fig._widget_layout = deepcopy(fig._layout_obj._props)
        fig._widget_data = deepcopy(fig._data)


def synced_figure(fig) -> dict:
    """``{"data": [...], "layout": {...}}``: the figure a browser gets from ``fig``'s synced state
    (for tests, and for checking what a reloaded page would draw)."""
    state = fig.get_state(["_widget_data", "_widget_layout"])
    return {"data": state["_widget_data"], "layout": state["_widget_layout"]}


# ---------------------------------------------------------------- value labels
def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps the number >= 1, to about three digits:
    '87.3 MiB', '288 KiB', '1.50 KiB', '12 B'."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{value:.0f} B"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f} {unit}"


# ---------------------------------------------------------------- progress bars
def live_notebook() -> bool:
    """True in a Jupyter kernel that a Jupyter server started for a person (JupyterLab), with
    ipywidgets available: there a widget progress bar draws and updates.

    The Jupyter server sets ``JPY_SESSION_NAME`` (the notebook's path) for the kernels it starts;
    headless runs (jupyter-book, nbmake, nbclient) do not set it.
    """
    if "ipykernel" not in sys.modules or not os.environ.get("JPY_SESSION_NAME"):
        return False
    try:
        from tqdm.notebook import IProgress
    except ImportError:
        return False
    return IProgress is not None


def progress_bar(iterable=None, **kwargs):
    """A tqdm progress bar: the ipywidgets bar in JupyterLab, the text bar everywhere else.

    In JupyterLab the text bar is written to stderr and shows as a pink error box, hence the
    widget there. Headless runs keep the text bar on purpose: the book is executed headless, drops
    stderr (``stderr_output: remove-warn`` in book/_config.yml) and so shows no bar at all, whereas
    a widget bar would stay frozen at 0% in the static pages and pull the ipywidgets scripts from
    a CDN into the offline book.
    """
    if live_notebook():
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, **kwargs)

"""What the live explorers share: whether plotly's FigureWidget can run, and redrawing into an Output.

plotly 6+ builds ``FigureWidget`` on the ``anywidget`` package. With it, an explorer updates its
figure in place; without it, the explorer redraws a static figure into an ``ipywidgets.Output``.
"""
from __future__ import annotations


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

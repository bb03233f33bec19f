"""Plotly figure helpers shared by the chapters."""
from __future__ import annotations


def init() -> None:
    """Render plotly both for JupyterLab (mime bundle) and for the static book (inlined plotly.js).

    The book is built offline, so plotly.js must be embedded in the page rather than fetched
    from a CDN; the ``notebook`` renderer does that.
    """
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook"
    pio.templates.default = "plotly_white"

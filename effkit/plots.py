"""Plotly figure helpers shared by the chapters."""
from __future__ import annotations

from plotly.io.base_renderers import NotebookRenderer


class OfflineNotebookRenderer(NotebookRenderer):
    """plotly's ``notebook`` renderer without MathJax from a CDN.

    plotly's HTML renderers write ``<script src=".../mathjax/3.../tex-svg.min.js">`` before every
    figure (``HtmlRenderer.to_mimebundle`` passes ``include_mathjax="cdn"`` to ``to_html``, with no
    option to change it). The book is offline and typesets its math with its own MathJax 2, so
    this renderer passes ``include_mathjax=False``. plotly.js itself is still inlined, once, by
    the renderer's ``activate`` (unchanged).
    """

    def to_mimebundle(self, fig_dict):
        from plotly.io import to_html

        post = self.post_script
        post = list(post) if isinstance(post, (list, tuple)) else [post] if post else None
        html = to_html(fig_dict, config=self.config, auto_play=self.auto_play,
                       include_plotlyjs=self.include_plotlyjs, include_mathjax=False,
                       post_script=post, full_html=False, animation_opts=self.animation_opts,
                       default_width="100%", default_height=525, validate=False)
        return {"text/html": html}


def init() -> None:
    """Render plotly both for JupyterLab (mime bundle) and for the static book (inlined plotly.js).

    The book is built offline, so plotly.js must be embedded in the page rather than fetched
    from a CDN; the ``notebook`` renderer does that. It is replaced by
    :class:`OfflineNotebookRenderer`, which also leaves out plotly's MathJax 3 CDN script.
    """
    import plotly.io as pio

    if not isinstance(pio.renderers["notebook"], OfflineNotebookRenderer):
        pio.renderers["notebook"] = OfflineNotebookRenderer(config=pio.renderers["notebook"].config)
    pio.renderers.default = "plotly_mimetype+notebook"
    pio.templates.default = "plotly_white"

"""``show(obj)``: the source of an effkit function or class, highlighted, in the book and in JupyterLab."""
from __future__ import annotations

import inspect


def source_of(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"show() needs a function, class, method or module with Python source; "
                        f"got {type(obj).__name__}") from err


def show(obj) -> None:
    """Display the highlighted source of ``obj`` (plain text outside IPython)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    code = source_of(obj)
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - IPython is a dependency
        print(code)
        return
    if get_ipython() is None:
        print(code)
        return
    # Inline styles (noclasses) so the colours survive in the static book without extra CSS.
    html = highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, style="default"))
    where = f"{obj.__module__}.{obj.__qualname__}" if hasattr(obj, "__qualname__") else obj.__name__
    display(HTML(f"<div style='font-size:0.85em'><b><code>{where}</code></b>{html}</div>"))

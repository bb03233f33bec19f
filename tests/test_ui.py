"""What the notebooks' live parts share (effkit.ui, effkit.plots), the warnings a student sees,
and the JupyterLab settings `make lab` ships."""
import json
import re
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest

import effkit as ek

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- value labels
@pytest.mark.parametrize("n, text", [(0, "0 B"), (12, "12 B"), (1536, "1.50 KiB"), (295_000, "288 KiB"),
                                     (2_359_296, "2.25 MiB"), (91_500_000, "87.3 MiB"), (1023.9 * 2**20, "1024 MiB"),
                                     (3 * 2**30, "3.00 GiB")])
def test_format_bytes(n, text):
    assert ek.ui.format_bytes(n) == text


# ---------------------------------------------------------------- plotly for the offline book
def test_plots_init_inlines_plotly_js_and_loads_no_mathjax_from_a_cdn(monkeypatch):
    import IPython.display
    import plotly.graph_objects as go
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    shown = []  # what the notebook renderer's one-time activation writes into the notebook
    monkeypatch.setattr(IPython.display, "display_html", lambda html, raw=False: shown.append(html))
    ek.plots.init()
    ek.plots.init()                                    # twice is harmless
    assert pio.renderers.default == "plotly_mimetype+notebook"
    bundle = go.Figure(go.Bar(x=["a"], y=[1]))._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in bundle, "JupyterLab's mime renderer stays"
    html = bundle["text/html"]
    assert "plotly-graph-div" in html
    assert "<script src" not in html and not re.search(r"mathjax|cdnjs|jsdelivr|cdn\.", html, re.I), \
        "the figure must not load MathJax (or anything) from a CDN: the book uses its own MathJax 2"
    [init_script] = shown
    assert get_plotlyjs() in init_script, "plotly.js is inlined once, for the offline book"
    assert "<script src" not in init_script.replace(get_plotlyjs(), "")


# ---------------------------------------------------------------- progress bars
def test_progress_bar_is_text_outside_jupyterlab(monkeypatch):
    from tqdm.notebook import tqdm as widget_bar

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not ek.ui.live_notebook(), "a kernel without a Jupyter server (the book build) is headless"
    bar = ek.ui.progress_bar(total=3, disable=True)
    assert not isinstance(bar, widget_bar)
    assert not isinstance(ek.train._progress_bar(3, False), widget_bar)


def test_progress_bar_is_a_widget_in_jupyterlab(monkeypatch):
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm as widget_bar

    monkeypatch.setenv("JPY_SESSION_NAME", "/work/book/ch02_full_finetuning.md")  # set by jupyter_server
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert ek.ui.live_notebook()
    assert isinstance(ek.ui.progress_bar(total=3, disable=True), widget_bar)
    assert isinstance(ek.train._progress_bar(3, False), widget_bar)
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert not ek.ui.live_notebook(), "a plain Python process is not a notebook"



def test_figure_widget_loads_plotly_when_drawn_not_when_created():
    """anywidget drops every later kernel message to a model whose front-end module took over
    2 s to load; plotly's own module (5 MB) can, after a page reload. effkit's FigureWidget is
    plotly's, with a small module that loads plotly's bundle (sent as ``_plotly_esm``) in render."""
    pytest.importorskip("anywidget")
    import plotly.graph_objects as go

    fig = ek.ui.figure_widget(go.Figure(go.Bar(y=[1, 2]), layout={"title": {"text": "t"}}))
    assert isinstance(fig, go.FigureWidget)
    state = fig.get_state(["_esm", "_plotly_esm"])
    assert len(state["_esm"]) < 5000 and "_plotly_esm" in state["_esm"]
    assert state["_plotly_esm"] == str(go.FigureWidget._esm), "plotly's own front end, unchanged"
    assert ek.ui.synced_figure(fig)["layout"]["title"]["text"] == "t"


# ---------------------------------------------------------------- warnings
def test_library_warning_a_student_cannot_act_on_is_filtered_narrowly():
    # In a fresh interpreter, as in a kernel: pytest restores the warning filters after collecting
    # a module, so the filter `import effkit` installs cannot be seen from inside a test.
    code = textwrap.dedent("""
        import warnings
        import effkit
        from transformers import BertConfig, BertModel

        model = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                     intermediate_size=8, vocab_size=10))
        model.is_gradient_checkpointing          # what peft reads when it wraps a model
        # the same text from anywhere else still shows: the filter is narrow
        warnings.warn_explicit("`is_gradient_checkpointing` is deprecated (student)", FutureWarning,
                               "student.py", 1, module="student")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stderr.splitlines() if "is_gradient_checkpointing" in line]
    assert shown == ["student.py:1: FutureWarning: `is_gradient_checkpointing` is deprecated (student)"]



def test_bitsandbytes_kernels_message_is_dropped_and_nothing_else():
    """bitsandbytes, imported on a CPU with AVX512-BF16, logs that the optional `kernels` package
    is missing (a pink box in JupyterLab); effkit drops that one message from that logger."""
    code = textwrap.dedent("""
        import logging
        import effkit
        import bitsandbytes
        log = logging.getLogger("bitsandbytes.backends.cpu.ops")
        log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.")
        log.warning("another bitsandbytes message")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gemm_4bit_forward" not in done.stderr
    assert "another bitsandbytes message" in done.stderr, "only the one message is dropped"


# ---------------------------------------------------------------- make lab
def test_lab_opens_markdown_chapters_as_jupytext_notebooks(monkeypatch, tmp_path):
    overrides = ROOT / ".jupyter" / "labconfig" / "default_setting_overrides.json"
    viewers = json.loads(overrides.read_text())["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    jupytext_config = pytest.importorskip("jupytext_config.labconfig")
    # the viewer name is the one jupytext's own `jupytext-config set-default-viewer` writes
    expected = jupytext_config.LabConfig(settings_file=tmp_path / "s.json").set_default_viewers(
        ["markdown", "myst"]).get_viewers()
    assert viewers == expected == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}

    makefile = (ROOT / "Makefile").read_text()
    lab = makefile[makefile.index("\nlab:"):].split("\n\n")[0]
    assert 'JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter' in lab and "jupyter lab" in lab

    # JupyterLab reads <config path>/labconfig/default_setting_overrides.json with this manager
    manager = pytest.importorskip("jupyter_server.services.config.manager")
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(ROOT / ".jupyter"))
    found = manager.ConfigManager(config_dir_name="labconfig").get("default_setting_overrides")
    assert found["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["markdown"] == "Jupytext Notebook"

"""JupyterLab in headless Chromium, as a student uses it.

* Chapters 04 and 06 open from their Jupytext ``.md`` files as notebooks, by double-click in the
  file browser and by their /lab/tree URL (the default viewer `make lab` ships).
* The live explorers (chapter 04's ranks, chapter 06's bits, chapter 05's sparsity), opened by the
  chapters' own explorer cells (after the few setup lines those
  cells need, the chapters' own calls), respond to their controls: the memory and accuracy they
  display change. After a page reload (the kernel still running), each is still drawn as built
  (title, axes, bars) and still responds. Running the whole chapters here would repeat what
  nbmake already runs, at minutes each.
"""
from __future__ import annotations

import json
import re
import shutil
import time

import jupytext
import nbformat
import pytest

from browserkit import ROOT, PageWatch
from lab import Lab, drag_slider, errors_in, kernel_idle, menu, open_notebook, run_all

CH04, CH05, CH06 = "ch04_lora_peft", "ch05_pruning", "ch06_quantization"
# Lab's own console noise that says nothing about effkit. Keep empty unless there is no other way.
KNOWN = ()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, shots):
    root = tmp_path_factory.mktemp("lab")
    (root / "book").mkdir()
    for ch in (CH04, CH06):
        shutil.copy(ROOT / "book" / f"{ch}.md", root / "book")
    nbformat.write(explorer_notebook(), root / "explorers.ipynb")
    nbformat.write(sparsity_notebook(), root / "sparsity.ipynb")
    server = Lab(root, shots / "jupyterlab.log")
    yield server
    server.close()


@pytest.fixture
def page(browser, request, shots):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())      # "leave the page?" on reload
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:      # what the page showed when the test failed
        page.screenshot(path=shots / f"failed_{request.node.name}.png")
    context.close()


# ---------------------------------------------------------------- the chapters open as notebooks
def _assert_chapter_notebook(page, ch: str) -> None:
    panel = open_notebook(page)
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel").first
    assert tab.inner_text() == f"{ch}.md"
    assert page.locator(".jp-FileEditor:visible").count() == 0, f"{ch}.md opened in the text editor"
    cells = jupytext.read(ROOT / "book" / f"{ch}.md").cells
    assert panel.locator(".jp-Cell").count() == len(cells), f"{ch}.md: not every cell of the chapter is shown"
    title = panel.locator(".jp-MarkdownCell h1").first.inner_text()
    assert title.strip().rstrip("¶") == re.search(r"^# (.+)$", (ROOT / "book" / f"{ch}.md").read_text(),
                                                   re.M).group(1).strip()
    assert panel.locator(".jp-CodeCell").count() == sum(c.cell_type == "code" for c in cells)


def test_chapter_md_opens_as_a_notebook_on_double_click(lab, page, shots):
    watch = PageWatch(page, allow=KNOWN)
    page.goto(lab.tree(workspace="double-click"))
    listing = page.locator(".jp-DirListing-content")
    listing.locator(".jp-DirListing-item", has_text="book").first.dblclick()
    listing.locator(".jp-DirListing-item", has_text=f"{CH04}.md").first.dblclick()
    _assert_chapter_notebook(page, CH04)
    page.screenshot(path=shots / "lab_ch04_opened.png")
    watch.check()


def test_chapter_md_opens_as_a_notebook_from_its_url(lab, page):
    watch = PageWatch(page, allow=KNOWN)
    page.goto(lab.tree(f"book/{CH06}.md", workspace="url"))
    _assert_chapter_notebook(page, CH06)
    watch.check()


# ---------------------------------------------------------------- the live explorers
def _explorer_cell(ch: str, call: str) -> str:
    """The chapter's own cell that opens its live explorer (tagged skip-execution for headless runs)."""
    path = ROOT / "book" / f"{ch}.md"
    path = path if path.exists() else ROOT / "drafts" / f"{ch}.md"   # a chapter not in the book yet
    cells = [c.source for c in jupytext.read(path).cells
             if "skip-execution" in c.metadata.get("tags", []) and call in c.source]
    assert len(cells) == 1, f"{ch}.md should have one cell that opens {call}"
    return cells[0]


def explorer_notebook():
    """Setup lines as the chapters write them, then each chapter's explorer cell."""
    cells = [
        "import effkit as ek\nek.plots.init()\n"
        "from effkit import baselines, batching, peft, recipes\nfrom effkit.quant import bits_explorer",
        # chapter 04: the pretrained classifier and the rank sweep (the fast profile's ranks, cached)
        "labels = ek.data.SENTIMENT_LABELS\n"
        "pretrained, tokenizer = ek.models.load_encoder('sequence', len(labels), label_names=labels)\n"
        "sweep = ek.peft.rank_explorer.RankSweep(pretrained, tokenizer)\n"
        "sweep.run(ranks=ek.pick(fast=(1, 8, 64), full=ek.peft.rank_explorer.RANKS), progress=False);",
        _explorer_cell(CH04, "rank_explorer("),
        # chapter 06: chapter 02's classifier (cached), its recipe, the data and the layer drawn
        "model, tokenizer, base_metrics = ek.baselines.sentiment_baseline(progress=False)\nmodel.eval()\n"
        "splits = ek.data.load_sentiment()\nconfig02 = recipes.baseline('sequence')\n"
        "layer_name = 'bert.encoder.layer.0.intermediate.dense'",
        _explorer_cell(CH06, "bits_explorer("),
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


# What a figure shows, read from the page: plotly's own copy of the figure (gd.data, gd.layout)
# and what it drew (title, bars, their value labels, axes).
DRAWN = """gd => ({
    title: (gd.querySelector('.gtitle') || {}).textContent || '',
    height: gd._fullLayout.height,
    axes: Object.fromEntries(Object.keys(gd._fullLayout).filter(k => /^[xy]axis\\d*$/.test(k))
                             .map(k => [k, {type: gd._fullLayout[k].type, domain: gd._fullLayout[k].domain}])),
    subplots: [...gd.querySelectorAll('.cartesianlayer > .subplot')].map(s => [...s.classList].join(' ')),
    bars: gd.querySelectorAll('.barlayer .trace.bars').length,
    barLabels: [...gd.querySelectorAll('.barlayer .trace.bars')].map(t => [...t.querySelectorAll('text.bartext')].map(x => x.textContent)),
    data: gd.data.map(t => ({name: t.name, x: t.x, y: t.y, text: t.text})),
})"""


def _drawn(figure) -> dict:
    return figure.evaluate(DRAWN)


def _wait_drawn(page, figure, done, timeout: float = 120) -> dict:
    """Poll what the figure shows until ``done(drawn)`` holds and the kernel is idle (an update
    arrives in steps: traces removed, traces added, title); returns it."""
    deadline = time.time() + timeout
    while True:
        d = _drawn(figure)
        if done(d):
            kernel_idle(page, timeout * 1000)
            return _drawn(figure)
        assert time.time() < deadline, f"the figure did not update in {timeout:.0f} s; it shows {d['title']!r}"
        page.wait_for_timeout(250)


def _outputs(panel):
    """The rank explorer's and the bits explorer's output areas (cells 3 and 5)."""
    code = panel.locator(".jp-CodeCell")
    return code.nth(2).locator(".jp-Cell-outputArea"), code.nth(4).locator(".jp-Cell-outputArea")


def _figure(output):
    return output.locator(".js-plotly-plot").first


def _assert_rank_drawn(d: dict, r: int) -> None:
    assert d["title"].startswith(f"LoRA r = {r}"), d["title"]
    assert d["height"] == 480
    assert d["axes"]["yaxis"]["type"] == "log" and d["axes"]["xaxis2"]["type"] == "log", d["axes"]
    assert d["axes"]["xaxis"]["domain"][1] < d["axes"]["xaxis2"]["domain"][0], "the two panels overlap"
    assert any("xy" in s.split() for s in d["subplots"]) and any("x2y2" in s.split() for s in d["subplots"])
    assert d["bars"] >= 2 and all(len(labels) == 4 and all(labels) for labels in d["barLabels"]), \
        f"memory bars or their value labels are missing: {d['barLabels']}"
    marker = d["data"][-1]
    assert marker["name"] == f"r = {r}" and marker["x"] == [r, r]


def _assert_bits_drawn(d: dict, title_start: str) -> None:
    assert d["title"].startswith(title_start), d["title"]
    assert d["height"] == 380
    assert [s.split()[-1] for s in d["subplots"]][:3] == ["xy", "x2y2", "x3y3"], d["subplots"]
    assert d["bars"] == 3 and all(d["barLabels"][1]) and all(d["barLabels"][2]), d["barLabels"]


def _reload(page, watch):
    """Save the notebook (its outputs name the widgets), reload the page and wait for the
    notebook; the kernel keeps running, so every widget is redrawn from its synced state.
    The reload cancels the lab's requests still in flight (its polling of the contents API):
    those show as ``net::ERR_ABORTED`` and are dropped; everything before the reload is checked."""
    menu(page, "File", "docmanager:save")
    page.wait_for_function("() => !document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
                           timeout=30_000)
    watch.check("before the reload")
    page.reload()
    watch.problems = [p for p in watch.problems if not p.startswith("request failed (net::ERR_ABORTED)")]
    panel = open_notebook(page)
    outputs = _outputs(panel)
    for out in outputs:
        _figure(out).wait_for(timeout=60_000)
        _figure(out).scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    return panel, outputs


def test_live_explorers_respond_and_survive_a_reload(lab, page, shots):
    watch = PageWatch(page, allow=KNOWN)
    page.goto(lab.tree("explorers.ipynb", workspace="explorers"))
    panel = open_notebook(page)
    run_all(page, panel)
    assert errors_in(panel) == []

    # ---- the notebook opened again while its kernel runs (a second tab): before any control
    # is touched, each explorer is drawn as it was built, from the state its widgets synced
    menu(page, "File", "docmanager:save")
    second = page.context.new_page()
    second_watch = PageWatch(second, allow=KNOWN)
    second.goto(lab.tree("explorers.ipynb", workspace="second"))
    for out in _outputs(open_notebook(second)):
        _figure(out).wait_for(timeout=60_000)
    second.wait_for_timeout(1000)
    again_rank, again_bits = (_figure(out) for out in _outputs(second.locator(".jp-NotebookPanel:visible").first))
    _assert_rank_drawn(_drawn(again_rank), 8)
    _assert_bits_drawn(_drawn(again_bits), "RTN int4")
    second_watch.check("the second tab")
    second.close()
    rank_out, bits_out = _outputs(panel)
    rank_fig, bits_fig = _figure(rank_out), _figure(bits_out)

    # ---- rank explorer: the rank moves the memory bars; a new target choice adds its accuracy
    rank_fig.scroll_into_view_if_needed()
    before = _drawn(rank_fig)
    drag_slider(page, rank_out.locator(".widget-slider, .jupyter-widget-slider").first, 1.0)   # r = 64
    after = _wait_drawn(page, rank_fig, lambda d: d["title"].startswith("LoRA r = 64") and d["data"][-1]["x"] == [64, 64])
    _assert_rank_drawn(after, 64)
    assert after["barLabels"][1] != before["barLabels"][1], "LoRA's memory labels did not change"
    assert after["data"][1]["y"] != before["data"][1]["y"], "LoRA's memory bars did not change"
    accuracy_points = sum(len(t["y"] or []) for t in after["data"] if t["name"].startswith("accuracy"))
    rank_out.locator("select").first.select_option(["query, value", "all attention"])   # trains 1 run
    chosen = _wait_drawn(page, rank_fig, lambda d: any(t["name"] == "accuracy, all attention" and t["y"]
                                                       for t in d["data"]), timeout=300)
    assert sum(len(t["y"] or []) for t in chosen["data"] if t["name"].startswith("accuracy")) > accuracy_points

    # ---- bits explorer: bits and method change the layer's bytes and the accuracy
    bits_fig.scroll_into_view_if_needed()
    b4 = _drawn(bits_fig)
    readings = [(b4["barLabels"][1][1], b4["barLabels"][2][1])]  # (quantized KiB, quantized accuracy)
    drag_slider(page, bits_out.locator(".widget-slider, .jupyter-widget-slider").first, 0.0)   # 2 bits
    b2 = _wait_drawn(page, bits_fig, lambda d: d["title"].startswith("RTN int2"))
    _assert_bits_drawn(b2, "RTN int2")
    readings.append((b2["barLabels"][1][1], b2["barLabels"][2][1]))
    bits_out.locator("select").first.select_option("nf4")
    nf4 = _wait_drawn(page, bits_fig, lambda d: d["title"].startswith("NF4"))
    _assert_bits_drawn(nf4, "NF4")
    readings.append((nf4["barLabels"][1][1], nf4["barLabels"][2][1]))
    assert bits_out.locator(".widget-readout").first.inner_text().strip() == "4", "NF4 is 4 bits"
    assert len({kib for kib, _ in readings}) == 3, f"the layer's bytes did not change: {readings}"
    assert len({acc for _, acc in readings}) >= 2, f"the accuracy shown never changed: {readings}"

    # ---- a reload after the moves: each explorer shows its last state and still responds
    panel, (rank_out, bits_out) = _reload(page, watch)
    rank_fig, bits_fig = _figure(rank_out), _figure(bits_out)
    reloaded = _drawn(rank_fig)
    _assert_rank_drawn(reloaded, 64)
    assert [t["name"] for t in reloaded["data"]] == [t["name"] for t in chosen["data"]]
    rank_out.screenshot(path=shots / "lab_rank_explorer_after_reload.png")
    drag_slider(page, rank_out.locator(".widget-slider, .jupyter-widget-slider").first, 3 / 6)  # r = 8
    _assert_rank_drawn(_wait_drawn(page, rank_fig, lambda d: d["title"].startswith("LoRA r = 8")
                                   and d["data"][-1]["x"] == [8, 8]), 8)

    bits_fig.scroll_into_view_if_needed()
    reloaded = _drawn(bits_fig)
    _assert_bits_drawn(reloaded, "NF4")
    assert bits_out.locator("select").first.input_value() == "nf4"
    bits_out.screenshot(path=shots / "lab_bits_explorer_after_reload.png")
    bits_out.locator("select").first.select_option("affine")                    # back to RTN int2
    _assert_bits_drawn(_wait_drawn(page, bits_fig, lambda d: d["title"].startswith("RTN int2")), "RTN int2")
    assert errors_in(panel) == []
    watch.check()


# ---------------------------------------------------------------- chapter 05's sparsity explorer
def sparsity_notebook():
    """Chapter 05's setup lines for its explorer (the classifier, the test subset, the cached
    sweep), then the chapter's explorer cell."""
    cells = [
        "import effkit as ek\nek.plots.init()\nfrom effkit import baselines, batching, cache, recipes\n"
        "from effkit.prune import sparsity_explorer, sweeps",
        "model, tokenizer, base_metrics = ek.baselines.sentiment_baseline(progress=False)\nmodel.eval()\n"
        "start = 'sentiment-baseline-' + cache.config_key(baselines.baseline_key('sequence'))[:12]\n"
        "config02 = recipes.baseline('sequence')\nsplits = ek.data.load_sentiment()\n"
        "sweep_size = ek.pick(fast=32, full=256)\n"
        "sweep_loader = batching.make_loader(batching.encode_sentiment(splits.test.take(sweep_size, seed=0), "
        "tokenizer, config02.max_length), config02.batch_size)\n"
        "sweep_data = {'split': 'test', 'size': sweep_size, 'seed': 0, 'max_length': config02.max_length}\n"
        "sweep = sweeps.magnitude_sweep(model, sweep_loader, ek.pick(fast=(0.0, 0.5, 0.7), "
        "full=(0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)), start=start, data=sweep_data, progress=False)",
        _explorer_cell(CH05, "sparsity_explorer("),
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


def _assert_sparsity_drawn(d: dict, title_start: str) -> None:
    assert d["title"].startswith(title_start), d["title"]
    assert [s.split()[-1] for s in d["subplots"]][:3] == ["xy", "x2y2", "x3y3"], d["subplots"]
    assert d["bars"] == 2 and len(d["barLabels"][0]) == 4 and all(d["barLabels"][0]), d["barLabels"]
    assert len(d["data"][2]["y"]) == 36, "one sparsity bar per pruned matrix"


def test_sparsity_explorer_responds_and_survives_a_reload(lab, page, shots):
    watch = PageWatch(page, allow=KNOWN)
    page.goto(lab.tree("sparsity.ipynb", workspace="sparsity"))
    panel = open_notebook(page)
    run_all(page, panel)
    assert errors_in(panel) == []
    out = panel.locator(".jp-CodeCell").nth(2).locator(".jp-Cell-outputArea")
    fig = _figure(out)
    fig.wait_for(timeout=60_000)
    fig.scroll_into_view_if_needed()
    first = _drawn(fig)
    _assert_sparsity_drawn(first, "global magnitude pruning at 50%")

    drag_slider(page, out.locator(".widget-slider, .jupyter-widget-slider").first, 18 / 19)   # 90%
    readout = out.locator(".widget-readout").first
    moved = _wait_drawn(page, fig, lambda d: d["title"].startswith(
        f"global magnitude pruning at {readout.inner_text().strip()}") and not d["title"].startswith(
        "global magnitude pruning at 50%"))
    _assert_sparsity_drawn(moved, "global magnitude pruning at")
    assert moved["barLabels"][0] != first["barLabels"][0], "the stored bytes did not change"
    assert moved["data"][0]["x"] != first["data"][0]["x"], "the accuracy marker did not move"
    out.locator("select").first.select_option("layer")
    layer = _wait_drawn(page, fig, lambda d: d["title"].startswith("layer magnitude pruning"))
    spread = layer["data"][2]["y"]
    assert max(spread) - min(spread) < 1e-3, "layer scope: every matrix gets the same sparsity"

    # ---- a reload: the explorer shows its last state and still responds
    menu(page, "File", "docmanager:save")
    page.wait_for_function("() => !document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
                           timeout=30_000)
    watch.check("before the reload")
    page.reload()
    watch.problems = [p for p in watch.problems if not p.startswith("request failed (net::ERR_ABORTED)")]
    panel = open_notebook(page)
    out = panel.locator(".jp-CodeCell").nth(2).locator(".jp-Cell-outputArea")
    fig = _figure(out)
    fig.wait_for(timeout=60_000)
    fig.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    reloaded = _drawn(fig)
    _assert_sparsity_drawn(reloaded, layer["title"])
    assert out.locator("select").first.input_value() == "layer"
    out.screenshot(path=shots / "lab_sparsity_explorer_after_reload.png")
    drag_slider(page, out.locator(".widget-slider, .jupyter-widget-slider").first, 10 / 19)    # 50%
    _assert_sparsity_drawn(_wait_drawn(page, fig, lambda d: d["title"].startswith("layer magnitude pruning at 50%")),
                           "layer magnitude pruning at 50%")
    assert errors_in(panel) == []
    watch.check()

"""The built book (fast profile) in headless Chromium, served on 127.0.0.1.

Every page loads with no JavaScript error and no failed or off-machine request, its math is
typeset by the book's own MathJax 2, every plotly figure has drawn its traces, and moving each
static slider applies that step's data and keeps the figure's title.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from book_site import Server, build, toc_pages
from browserkit import ROOT, PageWatch

PAGES = ["index", *toc_pages(), "genindex", "search"]

# Console messages that cannot be fixed from the book's config, each with the reason. Keep empty
# unless there is no other way.
KNOWN = ()


@pytest.fixture(scope="module")
def site():
    # EFFKIT_BOOK_HTML: test a book already built (say by `make book`) instead of building one.
    html = Path(os.environ.get("EFFKIT_BOOK_HTML") or build(ROOT / "build" / "browser" / "book-build.log"))
    server = Server(html)
    yield server
    server.close()


def _wait_for_mathjax(page) -> None:
    """Wait until MathJax 2 has started and typeset everything queued."""
    if not page.locator("script[src*='MathJax.js']").count():
        return                                  # Sphinx loads MathJax only where there is math
    page.wait_for_function("() => window.MathJax && window.MathJax.isReady", timeout=30_000)
    page.evaluate("() => new Promise(done => MathJax.Hub.Queue(() => done(true)))")


PLOTS = """() => [...document.querySelectorAll('.plotly-graph-div')].map(gd => ({
    traces: (gd._fullData || []).filter(t => t.visible === true).length,
    drawn: gd.querySelectorAll('.cartesianlayer g.trace, .cartesianlayer g.hm, .polarlayer g.trace,'
                               + ' .pielayer g.trace').length,
    points: gd.querySelectorAll('.cartesianlayer .point, .cartesianlayer path.js-line,'
                                + ' .cartesianlayer g.hm image').length,
    sliders: ((gd.layout || {}).sliders || []).length,
    title: ((gd.layout || {}).title || {}).text || '',
}))"""


def _plots(page) -> list[dict]:
    page.wait_for_function("() => [...document.querySelectorAll('.plotly-graph-div')]"
                           ".every(gd => gd._fullLayout && gd.querySelector('.main-svg'))", timeout=30_000)
    return page.evaluate(PLOTS)


def _text(html: str) -> str:
    """What plotly draws for a title: tags dropped (<br> starts a line), no spaces compared."""
    return re.sub(r"[\s\u200b]+", "", re.sub(r"<[^>]+>", "", html))


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_cleanly_with_math_and_figures(site, browser, shots, name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page, allow=KNOWN)
    page.goto(site.url + f"{name}.html", wait_until="load")
    _wait_for_mathjax(page)
    math = page.evaluate("""() => ({
        source: document.querySelectorAll('span.math.notranslate, div.math.notranslate').length,
        typeset: document.querySelectorAll('script[type^="math/tex"]').length,
        rendered: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_SVG, .MathJax_CHTML').length,
        errors: document.querySelectorAll('.MathJax_Error, merror, .MathJax .merror').length,
        raw: [...document.querySelectorAll('span.math.notranslate, div.math.notranslate')].filter(e => /\\\\[(\\[]|\\$\\$/.test(e.innerText)).length,
    })""")
    assert math["errors"] == 0, f"{name}: MathJax reports {math['errors']} errors"
    assert math["raw"] == 0, f"{name}: {math['raw']} math elements still show raw TeX"
    assert math["typeset"] >= math["source"], f"{name}: {math['source']} math elements, {math['typeset']} typeset"
    if math["source"]:
        assert math["rendered"] >= math["source"], f"{name}: math not rendered: {math}"
    plots = _plots(page)
    for i, p in enumerate(plots):
        assert p["traces"] > 0 and p["drawn"] >= p["traces"] and p["points"] > 0, \
            f"{name}: figure {i} ({p['title'][:60]!r}) has not drawn its traces: {p}"
    if name == "ch01_cross_entropy":
        page.locator("div.math").first.scroll_into_view_if_needed()
        page.evaluate("() => document.querySelector('div.math').scrollIntoView({block: 'start'})")
        page.screenshot(path=shots / "book_ch01_math.png")
    page.wait_for_timeout(300)                  # late requests (fonts) still count
    watch.check(name)
    page.close()


SLIDER_FIGURES = ("bits_slider_figure", "rank_slider_figure", "sparsity_slider_figure")
SLIDER_PAGES = [p for p in toc_pages() if any(f in (ROOT / "book" / f"{p}.md").read_text() for f in SLIDER_FIGURES)]

STATE = """gd => ({data: gd.data.map(t => ({x: t.x, y: t.y, text: t.text, name: t.name})),
                  title: gd.layout.title.text, shown: (gd.querySelector('.gtitle') || {}).textContent || '',
                  active: gd._fullLayout.sliders[0].active,
                  steps: gd.layout.sliders[0].steps.map(s => ({label: s.label, args: s.args}))})"""


def _move_slider(page, figure, label: str) -> None:
    """Click the slider's rail where step ``label`` sits, as a reader does."""
    rail = figure.locator(".slider-rail-touch-rect").bounding_box()
    tick = figure.locator(".slider-label", has_text=re.compile(rf"^{re.escape(label)}$")).first.bounding_box()
    page.mouse.click(tick["x"] + tick["width"] / 2, rail["y"] + rail["height"] / 2)


@pytest.mark.parametrize("name", SLIDER_PAGES)
def test_static_sliders_change_the_data_and_keep_the_title(site, browser, shots, name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page, allow=KNOWN)
    page.goto(site.url + f"{name}.html", wait_until="load")
    _plots(page)
    figures = page.locator(".plotly-graph-div").filter(has=page.locator(".slider-container"))
    assert figures.count() >= 1, f"{name}: no figure with a slider"
    for k in range(figures.count()):
        fig = figures.nth(k)
        fig.scroll_into_view_if_needed()
        before = fig.evaluate(STATE)
        steps = before["steps"]
        for target in {0, len(steps) - 1} - {before["active"]} or {1}:
            label = steps[target]["label"]
            _move_slider(page, fig, label)
            page.wait_for_function(f"gd => gd._fullLayout.sliders[0].active === {target}",
                                   arg=fig.element_handle(), timeout=10_000)
            after = fig.evaluate(STATE)
            data_args, layout_args = steps[target]["args"]
            assert [t["y"] for t in after["data"]] != [t["y"] for t in before["data"]], \
                f"{name}: moving slider {k} to {label} changed no data"
            for key, values in data_args.items():
                for i, value in enumerate(values):
                    got = after["data"][i][key]
                    if value or got:
                        assert json.dumps(got) == json.dumps(value), \
                            f"{name}: slider {k} step {label}: trace {i} {key} is {got!r}, expected {value!r}"
            title = layout_args["title.text"]
            assert after["title"] == title, f"{name}: slider {k} step {label}: title {after['title']!r}"
            assert after["shown"] and _text(after["shown"]) == _text(title), \
                f"{name}: slider {k} step {label}: the figure shows title {after['shown']!r}, expected {title!r}"
            before = after
        fig.screenshot(path=shots / f"book_{name}_slider{k}_{label}.png")
    watch.check(name)
    page.close()

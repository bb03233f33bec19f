"""Browser tests: the built book and JupyterLab, as a student meets them, in headless Chromium.

They drive Debian's ``chromium`` (``/usr/bin/chromium``; ``apt-get install chromium``) through
Python's ``playwright``; ``playwright install`` (a browser download) is never used. Where either
is missing, every test here is skipped with the reason, so ``make test`` on a laptop without
chromium still passes and nothing is installed behind the user's back.

They run after every other test of the same pytest run (``pytest_collection_modifyitems``):
``make test`` executes the chapters through nbmake first, and the browser tests reuse what that
left behind (the executed notebooks, the trainings cached in EFFKIT_CACHE). Screenshots are
written to ``build/browser/``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from browserkit import CHROMIUM, CHROMIUM_ARGS, SHOTS, skip_reason

HERE = Path(__file__).resolve().parent


def _is_browser_test(item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config, items):
    """Skip the browser tests with a clear reason where they cannot run; otherwise run them last."""
    browser = [i for i in items if _is_browser_test(i)]
    if not browser:
        return
    reason = skip_reason()
    if reason:
        for item in browser:
            item.add_marker(pytest.mark.skip(reason=reason))
    items[:] = [i for i in items if not _is_browser_test(i)] + browser


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (a failing test's page is screenshotted)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

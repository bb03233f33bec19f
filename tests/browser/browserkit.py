"""What the browser tests share: where chromium is, how it is launched, and a page watcher."""
from __future__ import annotations

import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("EFFKIT_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "build" / "browser"
# Chromium in a closed network: no background fetches (they would be refused and logged), no QUIC,
# no GPU. playwright's launch() gives every run a fresh, temporary user-data-dir.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"browser tests skipped: no chromium at {CHROMIUM} "
                "(Debian/Ubuntu: apt-get install chromium; .ci/run installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: Python playwright is not installed (make install)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PageWatch:
    """Everything a page did wrong: console errors, uncaught exceptions, failed requests, HTTP
    errors, and any request that leaves 127.0.0.1 (the book and the lab must work offline).
    ``allow``: substrings of problems that are known and explained where they are listed."""

    LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")

    def __init__(self, page, allow=()):
        self.problems: list[str] = []
        self.allow = tuple(allow)
        page.on("console", lambda m: m.type == "error" and self._add(f"console error: {m.text} ({m.location.get('url')})"))
        page.on("pageerror", lambda e: self._add(f"uncaught exception: {e}"))
        page.on("requestfailed", lambda r: self._add(f"request failed ({r.failure}): {r.url}"))
        page.on("response", lambda r: r.status >= 400 and self._add(f"HTTP {r.status}: {r.url}"))
        page.on("request", lambda r: r.url.startswith(self.LOCAL) or self._add(f"non-local request: {r.url}"))

    def _add(self, text: str) -> None:
        if not any(a in text for a in self.allow):
            self.problems.append(text)

    def check(self, where: str = "the page") -> None:
        """Fail with every problem seen so far (then start a new list)."""
        problems, self.problems = self.problems, []
        assert not problems, f"{where}: {len(problems)} problems in the browser:\n" + "\n".join(problems)

"""Build the book (fast profile) for the browser tests and serve it on 127.0.0.1.

``make test`` runs every chapter through nbmake with ``--overwrite``, which leaves the executed
notebooks in ``build/nb/book``. The book is built from those outputs with execution off: the same
_config.yml (only ``execute_notebooks`` differs), the same _toc.yml, intro and static folders, in
well under a minute instead of executing every chapter a second time (several minutes on two
cores even with every training cached). Where ``build/nb/book`` holds no notebooks at all
(``pytest tests/browser`` on a fresh clone), the book is built the way ``make book`` builds it,
into ``build/book-fast``.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
EXECUTED = ROOT / "build" / "nb" / "book"       # written by nbmake --overwrite (make test)
SOURCE = ROOT / "build" / "browser" / "book-src"
SKIP_TAG = "skip-execution"


def toc_pages() -> list[str]:
    """The book's pages, in order: root, then every chapter file of book/_toc.yml."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]
    for entry in toc.get("chapters", []):
        files.append(entry["file"])
    return files


def executed(path: Path) -> bool:
    """True when every code cell of the notebook at ``path`` that a headless run executes
    (all but ``skip-execution`` ones) has run."""
    if not path.exists():
        return False
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()
             and SKIP_TAG not in c.metadata.get("tags", [])]
    return bool(cells) and all(c.get("execution_count") for c in cells)


def _jupyter_book() -> str:
    return str(Path(sys.executable).parent / "jupyter-book")


def build(log: Path) -> Path:
    """Build the fast-profile book; returns its html folder. ``log`` gets jupyter-book's output."""
    from effkit.tools.notebooks import copy_mathjax

    copy_mathjax(BOOK / "_mathjax" / "mathjax")
    env = {**os.environ, "EFFKIT_PROFILE": "fast"}
    chapters = [p for p in toc_pages() if (BOOK / f"{p}.md").exists() and p != toc_pages()[0]]
    ran = {p: executed(EXECUTED / f"{p}.ipynb") for p in chapters}
    if any((EXECUTED / f"{p}.ipynb").exists() for p in chapters) and not all(ran.values()):
        raise RuntimeError(f"{EXECUTED} holds chapters that did not run to the end: "
                           f"{[p for p, ok in ran.items() if not ok]} (their nbmake test failed, or "
                           "`make notebooks` converted them without running them: run `make test`, "
                           "or test a built book with EFFKIT_BOOK_HTML=build/book-fast/_build/html)")
    if all(ran.values()):
        shutil.rmtree(SOURCE, ignore_errors=True)
        SOURCE.mkdir(parents=True)
        for p in chapters:
            shutil.copy(EXECUTED / f"{p}.ipynb", SOURCE / f"{p}.ipynb")
        shutil.copy(BOOK / f"{toc_pages()[0]}.md", SOURCE)
        shutil.copy(BOOK / "_toc.yml", SOURCE)
        for folder in BOOK.glob("_*/"):                 # _mathjax, _ext, _extra ...
            (SOURCE / folder.name).symlink_to(folder, target_is_directory=True)
        config = yaml.safe_load((BOOK / "_config.yml").read_text())
        config["execute"]["execute_notebooks"] = "off"
        (SOURCE / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        out, cmd = SOURCE, [_jupyter_book(), "build", str(SOURCE), "--path-output", str(SOURCE)]
    else:
        out = ROOT / "build" / "book-fast"
        cmd = [_jupyter_book(), "build", str(BOOK), "--path-output", str(out)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    html = out / "_build" / "html"
    if rc != 0 or not (html / "index.html").exists():
        raise RuntimeError(f"the book build failed (exit {rc}); see {log}")
    return html


class Server:
    """A static http server for ``folder`` on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

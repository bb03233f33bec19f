"""Convert the Jupytext MyST sources (book/, solutions/, exercises/) to .ipynb for nbmake.

``python -m effkit.notebooks build/nb book solutions exercises`` writes
``build/nb/<folder>/<name>.ipynb`` for every ``ch*.md`` (and the book's other notebooks).
"""
from __future__ import annotations

import sys
from pathlib import Path


def is_notebook_source(path: Path) -> bool:
    head = path.read_text(encoding="utf-8")[:400]
    return head.startswith("---") and "jupytext" in head and "kernelspec" in head


def convert(out_dir: str | Path, folders: list[str]) -> list[Path]:
    import jupytext

    written = []
    for folder in folders:
        for src in sorted(Path(folder).glob("*.md")):
            if not is_notebook_source(src):
                continue
            target = Path(out_dir) / folder / (src.stem + ".ipynb")
            target.parent.mkdir(parents=True, exist_ok=True)
            jupytext.write(jupytext.read(src), target)
            written.append(target)
    return written


def copy_mathjax(dest: str | Path) -> Path:
    """Copy MathJax (from the jupyter-server-mathjax package) next to the book's static files.

    Sphinx would otherwise load MathJax from a CDN, and the book must render math offline.
    """
    import shutil

    import jupyter_server_mathjax

    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    dest = Path(dest)
    if not (dest / "MathJax.js").exists():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


if __name__ == "__main__":
    if sys.argv[1] == "--mathjax":
        print("MathJax copied to", copy_mathjax(sys.argv[2]))
        sys.exit(0)
    out, *folders = sys.argv[1:]
    paths = convert(out, folders)
    print(f"converted {len(paths)} notebooks into {out}")

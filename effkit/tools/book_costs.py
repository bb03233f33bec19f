"""What each chapter costs to execute, read from a book build's jupyter-cache records.

Jupyter Book (myst-nb) keeps one cache record per executed notebook, with the seconds its
execution took. ``make book`` prints them after every build; a cold full-profile build (empty
``EFFKIT_CACHE``, so every model is trained) is recorded in ``book/costs.json`` with::

    python -m effkit.tools.book_costs build/book-full --write book/costs.json --note "..."

The README's table and each chapter's opening line quote that file; ``tests/test_book_costs.py``
checks that they agree with it.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

from ..files import atomic_write_json

COSTS_FILE = Path(__file__).resolve().parents[2] / "book" / "costs.json"


def execution_seconds(build_dir) -> dict[str, float]:
    """``{chapter stem: seconds}`` of the last execution of each notebook in ``build_dir`` (the
    ``--path-output`` of ``jupyter-book build``); empty if nothing was executed there yet."""
    from jupyter_cache import get_cache

    folder = Path(build_dir) / "_build" / ".jupyter_cache"
    if not folder.exists():
        return {}
    records = sorted(get_cache(str(folder)).list_cache_records(), key=lambda r: r.created)
    return {Path(r.uri).stem: float(r.data["execution_seconds"]) for r in records
            if "execution_seconds" in (r.data or {})}


def minutes(seconds: float) -> str:
    """``"40 s"`` under two minutes, else whole minutes: ``"17 min"``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def table(seconds: dict[str, float]) -> str:
    """A plain-text table of the chapters' execution times and their total."""
    width = max([len(name) for name in seconds] + [7])
    lines = [f"{name:<{width}}  {minutes(s):>7}" for name, s in seconds.items()]
    lines.append(f"{'total':<{width}}  {minutes(sum(seconds.values())):>7}")
    return "\n".join(lines)


def record(seconds: dict[str, float], path, note: str) -> dict:
    """Write the measured times with where they come from (machine, commit, note). ``sources``
    says, per chapter, which run measured it; a later partial re-measure (one chapter run cold
    through nbmake with chapter 02's baselines cached) edits that chapter's entry and source."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(path).resolve().parent).stdout.strip()
    entry = {"profile": "full", "cold": True, "machine": f"{platform.machine()}, "
             f"{_cpu_count()} CPU cores, no GPU", "commit": commit or None, "note": note,
             "seconds": {name: round(s, 1) for name, s in seconds.items()},
             "sources": {name: f"cold jupyter-book build of {commit}" for name in seconds},
             "total_seconds": round(sum(seconds.values()), 1)}
    atomic_write_json(Path(path), entry)
    return entry


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", help="the --path-output folder of a jupyter-book build")
    parser.add_argument("--write", metavar="JSON", help="record these times (a cold full build)")
    parser.add_argument("--note", default="", help="how the build was run, stored with --write")
    args = parser.parse_args(argv)
    seconds = execution_seconds(args.build_dir)
    if not seconds:
        print(f"no executed notebooks recorded under {args.build_dir}")
        return 0
    print("Execution time of each chapter in this build (a chapter served from the cache is not re-run):")
    print(table(seconds))
    if args.write:
        record(seconds, args.write, args.note)
        print(f"recorded in {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

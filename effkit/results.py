"""Measured headline figures, one JSON file per chapter.

Chapters call ``record("02", "test_accuracy", 0.83, "fraction")``; summary tables, the capstone
and the tests read them back with ``load("02")``. Each figure keeps the profile and device it
came from, and each profile has its own folder (``<results>/fast``, ``<results>/full``), so a
fast-profile number is never mistaken for, or written over, a full-profile one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .config import device, profile, results_dir
from .files import atomic_write_json


def _chapter_file(chapter: str | int) -> Path:
    # One folder per profile, so a quick fast-profile test run never overwrites the book's numbers.
    key = f"{int(chapter):02d}" if str(chapter).isdigit() else str(chapter)
    return results_dir() / profile() / f"ch{key}.json"


def record(chapter: str | int, name: str, value, unit: str) -> dict:
    """Store one measured figure and return the stored entry."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy / torch scalars
        except (TypeError, ValueError):
            raise TypeError(f"value must be a number, got {type(value).__name__}") from None
    path = _chapter_file(chapter)
    data = load(chapter)
    entry = {"value": value, "unit": unit, "profile": profile(), "device": str(device()),
             "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    data[name] = entry
    atomic_write_json(path, data)
    return entry


def load(chapter: str | int) -> dict:
    """All figures recorded for a chapter (empty dict if none yet)."""
    path = _chapter_file(chapter)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def value(chapter: str | int, name: str):
    """One recorded value; a KeyError says which chapter to run if it is missing."""
    data = load(chapter)
    if name not in data:
        raise KeyError(f"no figure {name!r} recorded for chapter {chapter}; run that chapter first "
                       f"(recorded: {sorted(data) or 'none'})")
    return data[name]["value"]

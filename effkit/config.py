"""Where effkit keeps things and what it runs on: profile, cache folders, device, seeds.

The device is chosen here and nowhere else.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

PROFILES = ("fast", "full")


def profile() -> str:
    """The run profile from ``EFFKIT_PROFILE``: ``fast`` (small seeded subsets, tests/CI) or ``full``."""
    value = os.environ.get("EFFKIT_PROFILE", "full").strip().lower()
    if value not in PROFILES:
        raise ValueError(f"EFFKIT_PROFILE must be one of {PROFILES}, got {value!r}")
    return value


def is_fast() -> bool:
    return profile() == "fast"


def pick(fast, full):
    """The value for the current profile: ``pick(fast=200, full=10_000)``."""
    return fast if is_fast() else full


def cache_dir() -> Path:
    """Root of effkit's cache (``EFFKIT_CACHE``, default ``~/.cache/effkit``); created on demand."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "effkit"
    path = Path(os.environ.get("EFFKIT_CACHE", default)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Where chapters record their measured figures (``EFFKIT_RESULTS``, default ``<cache>/results``)."""
    path = Path(os.environ.get("EFFKIT_RESULTS", cache_dir() / "results")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def device():
    """The one place effkit picks a device: ``EFFKIT_DEVICE`` if set, else CUDA when present, else CPU."""
    import torch

    wanted = os.environ.get("EFFKIT_DEVICE")
    if wanted:
        dev = torch.device(wanted)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"EFFKIT_DEVICE={wanted!r} but CUDA is not available on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated exactly."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)

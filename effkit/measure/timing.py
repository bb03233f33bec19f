"""Step time: median and spread of repeated steps, and interleaved comparisons."""
from __future__ import annotations

import time

import numpy as np
import torch


# ---------------------------------------------------------------- step time
def check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _synchronize() -> None:
    # CUDA path: kernels run asynchronously; wait for them, or the clock stops too early.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _synchronize()
    start = time.perf_counter()
    fn()
    _synchronize()
    return time.perf_counter() - start


def _summary(times: list[float]) -> dict:
    q1, median, q3 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return {"median": median, "iqr": q3 - q1, "all": list(times)}


def step_time(fn, warmup: int = 2, repeats: int = 5) -> dict:
    """Seconds one call of ``fn()`` takes: ``{"median", "iqr", "all"}``.

    The first ``warmup`` calls are run and thrown away (they pay for lazy initialisation,
    allocator growth and caches); then ``repeats`` calls are timed one by one. The median
    resists the odd slow call from other programs, and the interquartile range says how noisy
    the machine was. On a GPU each call is synchronised so the time is the kernels', not the
    launch's.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (a function running one step), got {type(fn).__name__}")
    check_count("warmup", warmup, 0)
    check_count("repeats", repeats, 1)
    for _ in range(warmup):
        _timed(fn)
    return _summary([_timed(fn) for _ in range(repeats)])


def compare_step_times(fns: dict, warmup: int = 2, repeats: int = 5) -> dict[str, dict]:
    """:func:`step_time` for several functions, interleaved: ``{name: {"median", "iqr", "all"}}``.

    The calls take turns (a, b, a, b ...), so a burst of load from another program slows
    every contestant alike instead of the one that happened to run then. Ratios of the
    medians are then fair comparisons made in one run.
    """
    if not isinstance(fns, dict) or not fns:
        raise ValueError("fns must be a non-empty dict {name: function}")
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"fns[{name!r}] must be callable, got {type(fn).__name__}")
    check_count("warmup", warmup, 0)
    check_count("repeats", repeats, 1)
    for _ in range(warmup):
        for fn in fns.values():
            _timed(fn)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return {name: _summary(values) for name, values in times.items()}

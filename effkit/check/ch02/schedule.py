"""Assignment 02, task 2: warmup then linear decay, checked against transformers'
``get_linear_schedule_with_warmup`` stepped the way ``effkit.train.fit`` steps it."""
from __future__ import annotations

import math

from .._core import call_student, fail, passed


# ================================================================ task 2: the learning rate
# (total_steps, warmup_steps, peak_lr): a single step, warmup 0 and 1, warmup = total - 1, the
# warmup that fit derives from warmup_ratio=0.1 (ceil), odd totals where a wrong rounding shows.
LR_CASES = ((10, 1, 5e-5), (10, 0, 2e-5), (1, 0, 1e-3), (2, 1, 3e-4), (7, 3, 0.1), (3, 0, 0.5),
            (25, 3, 5e-5), (16, 2, 2e-4), (37, 36, 1e-3), (5, 4, 0.01), (64, 7, 3e-5),
            (100, 10, 1e-4))

ZERO_HINT = ("warmup_steps can be 0 (warmup_ratio=0 in TrainConfig): then there is no warmup and "
             "the first update already runs at peak_lr; do not divide by warmup_steps then "
             "(transformers divides by max(1, warmup_steps))")


def oracle_lrs(total: int, warmup: int, peak: float) -> list[float]:
    """The rate each update 1..total uses: read from a real optimizer driven by
    ``transformers.get_linear_schedule_with_warmup``, stepped as ``effkit.train.fit`` steps it
    (optimizer.step(), then scheduler.step())."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=peak)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _factor(s: int, total: int, warmup: int) -> float:
    """The multiplier after s scheduler steps (0-based), for building the mistakes below."""
    if s < warmup:
        return s / max(1, warmup)
    return max(0.0, (total - s) / max(1, total - warmup))


def _lr_mistakes(total: int, warmup: int, peak: float):
    steps = range(1, total + 1)
    out = [
        ([peak * _factor(t, total, warmup) for t in steps],
         "your rates are one update ahead: they are the rates AFTER each update",
         "fit calls scheduler.step() after optimizer.step(), so update t runs at the rate set "
         "after t - 1 scheduler steps; with a warmup the first update runs at lr 0 (History."
         "learning_rate and get_last_lr() record the rate after the update)"),
        ([peak * (t / warmup if t <= warmup else _factor(t - 1, total, warmup)) for t in steps],
         "the warmup reaches the peak one update early",
         "during the warmup update t runs at peak * (t - 1) / warmup_steps: 0 for the first "
         "update, the peak only at update warmup_steps + 1"),
        ([peak * (_factor(t - 1, total, warmup) if t - 1 < warmup
                  else max(0.0, (total - (t - 1)) / total)) for t in steps],
         "the decay runs over total_steps instead of the steps after the warmup",
         "after the warmup the rate falls from the peak to 0 over total_steps - warmup_steps "
         "updates: peak * (total - s) / (total - warmup)"),
        ([peak * _factor(t - 1, total, 0) for t in steps],
         "the warmup is missing",
         "for the first warmup_steps updates the rate rises linearly from 0 towards the peak"),
        ([_factor(t - 1, total, warmup) for t in steps],
         "the rates are fractions of the peak, not learning rates",
         "multiply the schedule's factor by peak_lr"),
    ]
    if warmup == 0:
        out.append(([peak * _factor(t - 1, total, 1) for t in steps],
                    "warmup_steps=0 was treated as one step of warmup",
                    "with warmup_steps=0 there is no warmup: the first update runs at peak_lr"))
    return out


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        fail(f"{what} returned a bool; expected a number", "return the learning rate as a float")
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    fail(f"{what} returned {type(value).__name__}; expected a number",
         "return the learning rate as a float")


def _same(a, b) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-15)
                                    for x, y in zip(a, b))


def check_lr_schedule(lr_at_step) -> None:
    """``lr_at_step(step, total_steps, warmup_steps, peak_lr)``, step counted from 1: the rate
    update ``step`` runs at in ``fit``, equal to transformers' linear warmup-then-decay schedule."""
    for total, warmup, peak in LR_CASES:
        case = f"total_steps={total}, warmup_steps={warmup}, peak_lr={peak}"
        got = [_number(call_student(f"lr_at_step({t}, {total}, {warmup}, {peak})", lr_at_step,
                                    t, total, warmup, peak, shape_hint=ZERO_HINT,
                                    shape_errors=(ZeroDivisionError,)),
                       f"lr_at_step({t}, {total}, {warmup}, {peak})")
               for t in range(1, total + 1)]
        want = oracle_lrs(total, warmup, peak)
        if _same(got, want):
            continue
        bad = next(i for i, (g, w) in enumerate(zip(got, want))
                   if not math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-15)) + 1
        shown = f"{case}: update {bad} runs at {want[bad - 1]:.6g}, yours {got[bad - 1]:.6g}"
        for value, what, hint in _lr_mistakes(total, warmup, peak):
            if _same(got, value):
                fail(f"{what} ({shown})", hint)
        if all(g == 0 or math.isclose(g, peak) for g in got) and any(g == 0 for g in got):
            fail(f"every rate is 0 or the peak ({shown}): integer division?",
                 "use `/`, not `//`: step / warmup_steps is a fraction")
        fail(shown, "update t runs at peak * f(t - 1): f(s) = s / warmup_steps while s < warmup_steps, "
                    "then (total_steps - s) / (total_steps - warmup_steps)")
    passed(f"lr_at_step: {len(LR_CASES)} (total, warmup) pairs, every update, the same rates as "
           f"transformers' linear schedule stepped as in fit")

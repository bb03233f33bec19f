"""Claims the prose makes about a run, checked against that run's numbers.

A chapter that writes "the activations more than double from 64 to 128 tokens" follows the
sentence with a claim cell::

    ek.claim_ratio("activations more than double from 64 to 128 tokens",
                   act[128], act[64], at_least=2)

which prints ``[PASS]`` with the measured numbers, or ``[the run disagrees]`` with the same
numbers. In the ``full`` profile (the book) a contradicted claim raises ``ClaimError`` and fails
the build, because the text would then be wrong. In the ``fast`` profile (a few training steps on
small subsets) accuracies mean little, so a contradicted claim only prints a warning line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import profile


class ClaimError(AssertionError):
    """The run contradicts a sentence of the chapter (raised in the full profile only)."""


@dataclass(frozen=True)
class Claim:
    """One checked claim: the sentence, whether the run supports it, and the measured numbers."""

    statement: str
    holds: bool
    detail: str = ""

    def __bool__(self) -> bool:
        return self.holds

    def line(self) -> str:
        verdict = "[PASS]" if self.holds else "[the run disagrees]"
        return f"{verdict} {self.statement}" + (f" ({self.detail})" if self.detail else "")


def claim(statement: str, holds, detail: str = "", *, strict: bool | None = None) -> Claim:
    """Print whether the run supports ``statement``; ``holds`` is the test, computed from the run.

    ``detail`` should carry the measured numbers, so the reader sees them either way. A claim that
    does not hold raises ``ClaimError`` when ``strict`` and only prints a warning line otherwise.
    ``strict`` defaults to "in the full profile": right for anything a training run decides. Pass
    ``strict=True`` for a claim no training decides (a byte count, an exact equality), which must
    hold in every profile. Returns the ``Claim``.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement must be a non-empty sentence, got {statement!r}")
    result = Claim(statement, bool(holds), detail)
    print(result.line())
    if not result.holds:
        enforce = profile() == "full" if strict is None else strict
        if enforce:
            said = statement + (f" ({detail})" if detail else "")
            raise ClaimError(f"the run disagrees with the text: {said}. "
                             "Change the sentence, or find out why the run changed.")
        if profile() == "fast":
            print("  warning: not enforced in the 'fast' profile, whose short runs on small subsets say "
                  "little; the full profile fails on it")
        else:
            print("  warning: this claim is not enforced (strict=False)")
    return result


def _fmt(x, digits: int) -> str:
    return f"{x:.{digits}g}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)


def _number(name: str, x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}") from None


def claim_at_least(statement: str, value, bound, unit: str = "", *, digits: int = 4,
                   strict: bool | None = None) -> Claim:
    """``value >= bound``; a NaN value (not measured) does not hold."""
    v, b = _number("value", value), _number("bound", bound)
    u = f" {unit}" if unit else ""
    return claim(statement, not math.isnan(v) and v >= b,
                 f"measured {_fmt(v, digits)}{u}, needs at least {_fmt(b, digits)}", strict=strict)


def claim_at_most(statement: str, value, bound, unit: str = "", *, digits: int = 4,
                  strict: bool | None = None) -> Claim:
    """``value <= bound``; a NaN value (not measured) does not hold."""
    v, b = _number("value", value), _number("bound", bound)
    u = f" {unit}" if unit else ""
    return claim(statement, not math.isnan(v) and v <= b,
                 f"measured {_fmt(v, digits)}{u}, needs at most {_fmt(b, digits)}", strict=strict)


def claim_ratio(statement: str, numerator, denominator, *, at_least=None, at_most=None,
                digits: int = 3, strict: bool | None = None) -> Claim:
    """``at_least <= numerator / denominator <= at_most`` (give one bound or both)."""
    if at_least is None and at_most is None:
        raise ValueError("claim_ratio needs at_least, at_most or both")
    n, d = _number("numerator", numerator), _number("denominator", denominator)
    ratio = n / d if d else math.nan
    ok = not math.isnan(ratio)
    bounds = []
    if at_least is not None:
        ok = ok and ratio >= at_least
        bounds.append(f"at least {_fmt(float(at_least), digits)}")
    if at_most is not None:
        ok = ok and ratio <= at_most
        bounds.append(f"at most {_fmt(float(at_most), digits)}")
    detail = (f"ratio {_fmt(ratio, digits)} = {_fmt(n, digits)} / {_fmt(d, digits)}, "
              f"needs {' and '.join(bounds)}")
    return claim(statement, ok, detail, strict=strict)

"""Shared pieces of the checkers."""
from __future__ import annotations


def passed(what: str) -> None:
    print(f"PASS  {what}")


def fail(what: str, hint: str = "") -> None:
    """Raise the AssertionError a student reads: what went wrong, then why it may have happened."""
    msg = f"FAIL  {what}"
    if hint:
        msg += f"\n      hint: {hint}"
    raise AssertionError(msg)

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


TYPE_HINT = "read the message: an operation got an argument of the wrong type, or None"


def call_student(what: str, fn, *args, shape_hint: str, hint: str | None = None,
                 shape_errors=(RuntimeError, IndexError), **kwargs):
    """Run the student's ``fn(*args, **kwargs)`` and return its result.

    NotImplementedError (an unfinished stub) passes through unchanged: that is where an exercise
    stops. Any other error becomes a FAIL naming ``what`` with the error's first line, raised
    outside the ``except`` block so the student reads one message, not a chained traceback.
    The hint is ``hint`` if given, else ``shape_hint`` for ``shape_errors``, else a type hint.
    """
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001  (the student's code may raise anything)
        error = err
    message = (str(error).strip().splitlines() or [""])[0]
    if hint is None:
        hint = shape_hint if isinstance(error, shape_errors) else TYPE_HINT
    fail(f"{what} raised {type(error).__name__}: {message}", hint)


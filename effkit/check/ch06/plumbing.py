"""What both halves of assignment 06's checks share: running student code, reading its tensors."""
from __future__ import annotations

import torch

from .._core import call_student, fail

SHAPE_HINT = ("a shape error: print the shapes of your intermediate tensors. A per-row scale is "
              "a column of shape (rows, 1), so that it broadcasts along each row")


def run_student(what: str, fn, *args, hint: str | None = None):
    """Run student code (see ``call_student``): shape and value errors get the shapes as a hint."""
    return call_student(what, fn, *args, shape_hint=SHAPE_HINT, hint=hint,
                        shape_errors=(RuntimeError, IndexError, ValueError))


def as_float64(value, what: str) -> torch.Tensor:
    """The student's value as a float64 tensor, shape kept (never flattened)."""
    if isinstance(value, torch.Tensor):
        return value.detach().double()
    fail(f"{what} is a {type(value).__name__}, expected a torch.Tensor",
         "return torch tensors (torch.round, torch.where ... keep them tensors)")


def as_pair(out, fn_name: str, names: str):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(f"{fn_name} returned {type(out).__name__}; expected a pair {names}",
             f"return {names.strip('()')} as a tuple")
    return out


def close(a: torch.Tensor, b: torch.Tensor | None, rtol: float = 1e-5) -> bool:
    if b is None or a.shape != b.shape:
        return False
    scale = max(float(b.abs().max()), 1e-12)
    return bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=1e-6 * scale))

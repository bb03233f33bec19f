"""What every assignment-01 check shares: running the student's function under a TorchFunctionMode
that reports autograd use, turning a crash into a FAIL with a hint, and comparing tensors at the
tolerance of their dtype."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .._core import fail

# rtol, and atol relative to the largest reference entry (float64 agrees to ~1e-15, float32 ~1e-7).
TOL = {torch.float64: (1e-9, 1e-12), torch.float32: (1e-4, 1e-5)}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def close_enough(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> bool:
    """Does ``out`` equal the float64 reference ``ref`` to the precision of ``dtype``?"""
    if tuple(out.shape) != tuple(ref.shape):
        return False
    out = out.detach().to(torch.float64)
    if not torch.isfinite(out).all():
        return False
    rtol, atol = TOL[dtype]
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return bool(torch.allclose(out, ref, rtol=rtol, atol=atol * (1.0 + scale)))


def max_abs_diff(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out.detach().to(torch.float64) - ref).abs().max().item()


# ---------------------------------------------------------------- watching the student's call
_AUTOGRAD_FUNCS = (torch.Tensor.backward, torch.autograd.grad, torch.autograd.backward,
                   torch.Tensor.requires_grad_)


def _requires_grad(out) -> bool:
    if isinstance(out, torch.Tensor):
        return out.requires_grad
    if isinstance(out, (tuple, list)):
        return any(_requires_grad(o) for o in out)
    return False


class _Watch(TorchFunctionMode):
    """Records what the student's code asks torch to do: autograd use and the named functions."""

    def __init__(self, named: dict | None = None):
        super().__init__()
        self.autograd = False
        self.named = named or {}
        self.called: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if any(func is f for f in _AUTOGRAD_FUNCS):
            self.autograd = True
        for f, name in self.named.items():
            if func is f and name not in self.called:
                self.called.append(name)
        out = func(*args, **(kwargs or {}))
        if _requires_grad(out):  # a graph is being built: some tensor requires grad
            self.autograd = True
        return out


AUTOGRAD_HINT = ("this task asks for the gradient written by hand: no .backward(), "
                 "torch.autograd.grad, requires_grad or torch.func; the check compares with "
                 "autograd itself")


def run_watched(fn_name: str, fn, args: tuple, case: str, crash_hint: str, named: dict | None = None):
    """Call the student's function under a _Watch. NotImplementedError passes through unchanged
    (that is how an unfinished exercise stops); any other error becomes a FAIL with a hint."""
    watch = _Watch(named)
    try:
        with watch:
            out = fn(*args)
    except NotImplementedError:
        raise
    except Exception as err:  # the student's code crashed: say so readably
        if watch.autograd:
            fail(f"{fn_name} used autograd for {case}", AUTOGRAD_HINT)
        first = (str(err).strip().splitlines() or [""])[0]
        fail(f"{fn_name} raised {type(err).__name__} for {case}: {first}", crash_hint)
    if watch.autograd:
        fail(f"{fn_name} used autograd for {case}", AUTOGRAD_HINT)
    return out, watch


DTYPE_HINT = ("a tensor created inside has another dtype (F.one_hot gives int64, a float64 "
              "constant promotes float32): create it with dtype= the input's dtype, or convert it "
              "with .to()")


def check_tensor(out, fn_name: str, what: str, shape: tuple, dtype: torch.dtype, case: str,
                  shape_hints: dict | None = None, shape_hint: str = "",
                  dtype_source: str = "the input's dtype", dtype_hint: str = DTYPE_HINT) -> None:
    """``out`` must be a tensor of ``shape`` and ``dtype``; ``shape_hints`` maps a wrong shape to
    the hint of the mistake that produces exactly that shape."""
    if not isinstance(out, torch.Tensor):
        fail(f"{fn_name}: {what} is a {type(out).__name__} for {case}; it must be a torch.Tensor",
             "return the tensors themselves (did a `return` go missing?)")
    if tuple(out.shape) != tuple(shape):
        hint = (shape_hints or {}).get(tuple(out.shape), shape_hint)
        fail(f"{fn_name}: {what} has shape {tuple(out.shape)} for {case}, expected {tuple(shape)}",
             hint)
    if out.dtype != dtype:
        fail(f"{fn_name}: {what} is {dtype_name(out.dtype)} for {case}, expected {dtype_name(dtype)} "
             f"({dtype_source})", dtype_hint)


def random_targets(gen: torch.Generator, n: int, k: int, all_classes: bool) -> torch.Tensor:
    """n class indices in [0, k). With ``all_classes``: class k−1 occurs, and every class when
    n > k; when n ≤ k one class occurs twice, so the class counts are not all 1 (a softmax over
    the batch axis would then give a zero db, like a sum over the classes). Without: never k−1."""
    if not all_classes:
        return torch.randint(0, k - 1, (n,), generator=gen)
    if n > k:
        y = torch.cat([torch.arange(k), torch.randint(0, k, (n - k,), generator=gen)])
    else:
        others = torch.randperm(k - 1, generator=gen)[: n - 2]  # distinct, never k−1
        y = torch.cat([torch.tensor([k - 1]), others, others[:1]])
    return y[torch.randperm(n, generator=gen)]


def crash_hint_for(i: int, missing_top: bool, neutral: str) -> str:
    if missing_top and i > 0:
        return ("it ran on the earlier batches and crashes on the first one where the largest "
                "class index (K−1) never occurs in targets: the class axis was sized from the targets "
                "(F.one_hot(targets) without num_classes gives only max(targets)+1 columns)")
    return neutral


def as_tuple(out, n: int, fn_name: str, names: str, case: str) -> tuple:
    if not isinstance(out, (tuple, list)) or len(out) != n:
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
        fail(f"{fn_name} returned {got} for {case}; expected the {n} values ({names})",
             f"end with `return {names}`")
    return tuple(out)

"""Checks for the chapter 04 assignment: a LoRA layer written by the student.

Each checker takes the student's class, built as ``cls(base: nn.Linear, r, alpha)`` with
attributes ``base``, ``A`` ``(r, in)``, ``B`` ``(out, r)``, ``scaling`` and the methods
``reset_parameters``, ``forward`` and ``merge``. Layers are tested square (in = out), where a
transposed product has the right shape but the wrong values, and non-square, where it fails.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._core import fail, passed

# (in, out, r, alpha): scaling 4 and 0.5, so a forgotten alpha/r changes the result either way.
SHAPES = ((12, 12, 3, 12.0), (16, 6, 4, 2.0))


def _build(cls, n_in: int, n_out: int, r: int, alpha: float, seed: int = 0):
    torch.manual_seed(seed)
    base = nn.Linear(n_in, n_out)
    layer = _call("building the layer with cls(base, r, alpha)", cls, base, r, alpha)
    for name in ("base", "A", "B"):
        if not hasattr(layer, name):
            fail(f"the layer has no attribute {name!r}", "keep the names that __init__ gives you")
    return layer, base


def _call(what: str, fn, *args):
    """Run student code; turn shape errors into a readable FAIL (NotImplementedError passes through)."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except RuntimeError as err:
        fail(f"{what} raised {type(err).__name__}: {str(err).splitlines()[0]}",
             "check the shapes: x is (..., in), A is (r, in), B is (out, r), base.weight is (out, in)")


def _randomize(layer, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.A.copy_(torch.randn(layer.A.shape, generator=g))
        layer.B.copy_(torch.randn(layer.B.shape, generator=g))


def _close(a, b) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def check_init(cls) -> None:
    """``reset_parameters``: A Kaiming-uniform like nn.Linear (bound 1/sqrt(in)), B all zeros."""
    for n_in, n_out, r, alpha in SHAPES:
        layer, base = _build(cls, n_in, n_out, r, alpha)
        if tuple(layer.A.shape) != (r, n_in) or tuple(layer.B.shape) != (n_out, r):
            fail(f"A is {tuple(layer.A.shape)} and B is {tuple(layer.B.shape)}; expected "
                 f"A {(r, n_in)} and B {(n_out, r)}", "do not replace the parameters __init__ made")
        if torch.count_nonzero(layer.B) != 0:
            fail("B is not all zeros after initialisation",
                 "B = 0 makes ΔW = B A = 0, so the adapted model starts exactly as the pretrained one")
        if torch.count_nonzero(layer.A) != layer.A.numel():
            fail("A has zeros after initialisation",
                 "if A and B both start at zero, both gradients are zero and LoRA never learns")
        bound = 1 / math.sqrt(n_in)
        if layer.A.abs().max() > bound + 1e-6 or layer.A.abs().max() < bound / 4:
            fail(f"A's values reach {layer.A.abs().max():.3f}; kaiming_uniform_(a=sqrt(5)) draws "
                 f"from U(-{bound:.3f}, {bound:.3f}) for in_features={n_in}",
                 "use nn.init.kaiming_uniform_(self.A, a=math.sqrt(5)), as nn.Linear and peft do")
    passed("reset_parameters: A is Kaiming-uniform, B is zero, so ΔW = 0 at the start")


def check_forward(cls) -> None:
    """``forward``: base(x) + (x A^T B^T) * alpha / r, equal to the base output at initialisation."""
    for n_in, n_out, r, alpha in SHAPES:
        layer, base = _build(cls, n_in, n_out, r, alpha)
        x = torch.randn(2, 5, n_in)
        with torch.no_grad():
            out, want = _call("forward", layer, x), base(x)
        if not _close(out, want):
            fail("at initialisation the output differs from the base layer's output",
                 "B starts at zero, so the LoRA term must vanish: is B zero and is base(x) added?")
        _randomize(layer)
        A, B, scale = layer.A.detach(), layer.B.detach(), alpha / r
        with torch.no_grad():
            out, base_out = _call("forward", layer, x), base(x)
        if _close(out, base_out + scale * (x @ A.T @ B.T)):
            continue
        if _close(out, base_out + x @ A.T @ B.T):
            fail("the LoRA term is not scaled", f"multiply it by alpha / r (here {alpha} / {r})")
        if n_in == n_out and _close(out, base_out + scale * (x @ (B @ A))):
            fail("the low-rank product is transposed: you computed x (B A), not x (B A)^T",
                 "ΔW = B A has shape (out, in) like base.weight, and a Linear computes x W^T")
        if _close(out, scale * (x @ A.T @ B.T)):
            fail("the base layer's output is missing", "return base(x) plus the scaled LoRA term")
        fail(f"forward gives the wrong values for in={n_in}, out={n_out}, r={r}, alpha={alpha}",
             "expected base(x) + (x @ A.T @ B.T) * alpha / r")
    passed("forward: base(x) + (x Aᵀ Bᵀ)·alpha/r, and equal to the base layer at the start")


def check_merge(cls) -> None:
    """``merge``: base.weight += (B @ A) * alpha / r; outputs unchanged by merging."""
    for n_in, n_out, r, alpha in SHAPES:
        layer, base = _build(cls, n_in, n_out, r, alpha)
        _randomize(layer)
        x = torch.randn(3, n_in)
        w0 = base.weight.detach().clone()
        with torch.no_grad():
            before = _call("forward", layer, x)
            _call("merge", layer.merge)
        A, B, scale = layer.A.detach(), layer.B.detach(), alpha / r
        w = base.weight.detach()
        if torch.allclose(w, w0):
            fail("merge left base.weight unchanged", "add ΔW = (B @ A) * alpha / r into base.weight")
        if not _close(w, w0 + scale * (B @ A)):
            if _close(w, w0 + B @ A):
                fail("merge adds B @ A without the alpha / r scale",
                     "forward scales the LoRA term, so the merged weight must be scaled the same way")
            if n_in == n_out and _close(w, w0 + scale * (B @ A).T):
                fail("merge adds (B A)^T: the transpose of ΔW",
                     "base.weight is (out, in); B @ A is (out, r) @ (r, in) = (out, in) already")
            fail("merged weight is not base.weight + (B @ A) * alpha / r")
        with torch.no_grad():
            after = _call("forward after merge", layer, x)
        if not _close(after, before):
            fail("the output changed after merging",
                 "after merge, forward must not add the LoRA term a second time (use self.merged)")
    passed("merge: base.weight + (B A)·alpha/r gives the same outputs with one matmul")

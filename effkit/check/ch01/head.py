"""Assignment 01, task 1: the backward pass of a softmax head (dX, dW, db), checked against autograd
of ``F.cross_entropy`` in float64."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._core import fail, passed
from .plumbing import (as_tuple, check_tensor, close_enough, crash_hint_for, dtype_name, max_abs_diff,
                       random_targets, run_watched)


# ================================================================ task 1: softmax head backward
@dataclass(frozen=True)
class HeadCase:
    n: int
    d: int
    k: int
    dtype: torch.dtype
    all_classes: bool = True
    max_logit: float | None = None  # rescale W so that max |X Wᵀ| is this

    @property
    def text(self) -> str:
        return (f"X {(self.n, self.d)}, W {(self.k, self.d)}, b ({self.k},) in {dtype_name(self.dtype)}"
                + (f", logits up to ±{self.max_logit:.0f}" if self.max_logit else "")
                + ("" if self.all_classes else f", class {self.k - 1} absent from targets"))


HEAD_CASES = (
    HeadCase(4, 4, 4, torch.float64),                      # square: N = K = d
    HeadCase(9, 5, 3, torch.float64),
    HeadCase(7, 6, 5, torch.float64, all_classes=False),
    HeadCase(16, 8, 10, torch.float32, max_logit=200.0),
)

H_NO_MEAN = ("the gradients are N times too large: the loss is the MEAN over the batch, so dZ "
             "carries a factor 1/N (summing the per-example losses instead of averaging them)")
H_TWICE = ("N times too small: dZ already carries the 1/N of the batch mean, and it was divided "
           "by N a second time (for db: sum dZ over the batch, a .mean() divides again)")
H_BY_K = ("divided by K, the number of classes, instead of N, the number of examples: the loss "
          "is a mean over the batch")
H_SIGN = "the sign is flipped: dZ = softmax(Z) − onehot(y), probabilities minus targets"
H_SOFTMAX_DIM = ("softmax normalised over dim=0, the batch: each ROW of logits is one example's "
                 "scores over the K classes, so use dim=1")
H_LOG_SOFTMAX = ("log-softmax was used instead of softmax: the gradient of −log softmax(z)_y is "
                 "the probabilities softmax(z) minus the one-hot, not log-probabilities")
H_NO_ONEHOT = "the one-hot of the targets is not subtracted: dZ = (softmax(Z) − onehot(y)) / N"
H_INT_LABELS = ("the class indices themselves were subtracted, as if targets were one-hot rows: "
                "turn them into an (N, K) one-hot first, F.one_hot(targets, K)")
H_DW_T = ("dW is transposed: W is stored like nn.Linear.weight, (K, d) = (out, in), so dW has "
          "that shape too; Xᵀ·dZ is the (d, K) layout of chapter 01's W, here you need its "
          "transpose")
H_DB_AXIS = ("db was summed over the classes (dim=1): b is added to every row, so its gradient "
             "sums dZ over the batch, dim=0, one entry per class")
H_DX_WT = ("dX multiplies dZ by Wᵀ: Z = X·Wᵀ + b, so going back from Z to X multiplies by W "
           "(K, d); on a square W both shapes fit, only the values tell")
H_HEAD_OVERFLOW = ("non-finite values with logits up to ±200: exp overflows float32 beyond 88; "
                   "use torch.softmax(Z, dim=1), which subtracts each row's max first")
H_HEAD_NEUTRAL = ("go step by step: dZ = ∂L/∂Z from chapter 01, then one product per product of "
                  "the forward pass Z = X·Wᵀ + b; check each result has the shape of what it is "
                  "the gradient of")
HEAD_CRASH = ("the shapes: X is (N, d), W is (K, d), b is (K,), targets (N,) are class indices, "
              "Z = X·Wᵀ + b is (N, K); write each intermediate's shape next to it")


def _head_data(i: int, c: HeadCase):
    gen = torch.Generator().manual_seed(1000 + i)
    X = torch.randn(c.n, c.d, generator=gen, dtype=torch.float64)
    W = torch.randn(c.k, c.d, generator=gen, dtype=torch.float64)
    b = 0.5 * torch.randn(c.k, generator=gen, dtype=torch.float64)
    if c.max_logit:
        W = W * (c.max_logit / (X @ W.T).abs().max())
    y = random_targets(gen, c.n, c.k, c.all_classes)
    # inputs in the case's dtype; the oracle works on the same values in float64
    X, W, b = (t.to(c.dtype).to(torch.float64) for t in (X, W, b))
    return X, W, b, y


def _head_reference(X, W, b, y):
    """Autograd of F.cross_entropy(X @ W.T + b, y): the oracle, in float64."""
    Xr, Wr, br = (t.clone().requires_grad_(True) for t in (X, W, b))
    with torch.enable_grad():
        F.cross_entropy(Xr @ Wr.T + br, y).backward()
    return Xr.grad, Wr.grad, br.grad


def _head_mistakes(X, W, b, y):
    """For each output, [(what the mistake returns, hint)]: dZ-level mistakes carried correctly
    through the backward pass, then mistakes in the backward pass itself."""
    n, k = X.shape[0], W.shape[0]
    Z = X @ W.T + b
    P, oh = torch.softmax(Z, dim=1), F.one_hot(y, k).double()
    dZ = (P - oh) / n
    dzs = [(dZ * n, H_NO_MEAN), (dZ / n, H_TWICE), (-dZ, H_SIGN),
           ((torch.softmax(Z, dim=0) - oh) / n, H_SOFTMAX_DIM),
           ((torch.log_softmax(Z, dim=1) - oh) / n, H_LOG_SOFTMAX),
           (P / n, H_NO_ONEHOT), ((P - y.double()[:, None]) / n, H_INT_LABELS)]
    if n == k:
        dzs.append(((P - y.double()[None, :]) / n, H_INT_LABELS))
    if n != k:
        dzs.append(((P - oh) / k, H_BY_K))
    out = {"dW": [(g.T @ X, h) for g, h in dzs], "db": [(g.sum(0), h) for g, h in dzs],
           "dX": [(g @ W, h) for g, h in dzs]}
    if k == X.shape[1]:
        out["dW"].append(((X.T @ dZ), H_DW_T))
        out["dX"].append((dZ @ W.T, H_DX_WT))
    if n == k:
        out["db"].append((dZ.sum(1), H_DB_AXIS))
    return out


def check_softmax_head_backward(softmax_head_backward) -> None:
    """``softmax_head_backward(X (N, d), W (K, d), b (K,), targets (N,)) -> (dX, dW, db)`` must
    equal autograd of ``F.cross_entropy(X @ W.T + b, targets)`` (mean), without autograd."""
    fn = "softmax_head_backward"
    worst = 0.0
    for i, c in enumerate(HEAD_CASES):
        X, W, b, y = _head_data(i, c)
        args = (X.to(c.dtype), W.to(c.dtype), b.to(c.dtype), y.clone())
        out, _ = run_watched(fn, softmax_head_backward, args, c.text,
                      crash_hint_for(i, not c.all_classes, HEAD_CRASH))
        dX, dW, db = as_tuple(out, 3, fn, "dX, dW, db", c.text)
        shapes = {"dX": (c.n, c.d), "dW": (c.k, c.d), "db": (c.k,)}
        hints = {"dX": ({}, "dX has the shape of X, (N, d)"),
                 "dW": ({(c.d, c.k): H_DW_T} if c.d != c.k else {},
                        "dW has the shape of W, (K, d)"),
                 "db": ({(c.n,): H_DB_AXIS} if c.n != c.k else {},
                        "db has the shape of b, (K,): one entry per class")}
        got = {"dX": dX, "dW": dW, "db": db}
        for name in ("dW", "db", "dX"):
            check_tensor(got[name], fn, name, shapes[name], c.dtype, c.text, *hints[name])
        refs = dict(zip(("dX", "dW", "db"), _head_reference(X, W, b, y)))
        mistakes = None
        for name in ("dW", "db", "dX"):
            if close_enough(got[name], refs[name], c.dtype):
                continue
            if not torch.isfinite(got[name]).all():
                fail(f"{fn}: {name} has inf/nan for {c.text}", H_HEAD_OVERFLOW)
            mistakes = mistakes or _head_mistakes(X, W, b, y)
            for wrong, hint in mistakes[name]:
                if close_enough(got[name], wrong, c.dtype):
                    fail(f"{fn}: {name} does not match autograd for {c.text}", hint)
            fail(f"{fn}: {name} does not match autograd for {c.text}: max difference "
                 f"{max_abs_diff(got[name], refs[name]):.3e}", H_HEAD_NEUTRAL)
        worst = max(worst, *(max_abs_diff(got[k], refs[k]) / (1 + refs[k].abs().max().item())
                             for k in refs))
    passed(f"{fn}: dX, dW, db match autograd of F.cross_entropy(X @ W.T + b, y) on "
           f"{len(HEAD_CASES)} batches (square and not, float64 and float32, logits up to ±200), "
           f"without autograd; max relative difference {worst:.1e}")

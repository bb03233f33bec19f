"""Checkers for assignment 01: the cross-entropy gradient and the weight-decay step.

Each checker runs the student's function on several random shapes in float32 and float64,
compares with autograd / torch.optim, and when the answer is wrong tries the classic mistakes
(a missing 1/N, a flipped sign, decay applied to the gradient ...) to say which one it was.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._core import fail, passed

# Tolerances per dtype: float64 agrees to ~1e-16, float32 to ~1e-7 relative.
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-7)}


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.to(b.dtype), b, **TOL[b.dtype]))


def _check_tensor(out, like: torch.Tensor, fn_name: str, case: str) -> None:
    if not isinstance(out, torch.Tensor):
        fail(f"{fn_name} returned {type(out).__name__} for {case}; it must return a torch.Tensor",
             "did you forget the `return` statement?")
    if out.shape != like.shape:
        fail(f"{fn_name} returned shape {tuple(out.shape)} for {case}, expected {tuple(like.shape)}",
             "the gradient has one entry per logit (N, C): do not reduce over the batch or classes"
             if fn_name == "ce_grad" else "the new θ has the same shape as θ")
    if out.dtype != like.dtype:
        fail(f"{fn_name} returned {out.dtype} for {case}, expected {like.dtype} (the input's dtype)",
             "a tensor you create inside (e.g. the one-hot matrix) must use dtype=logits.dtype; "
             "torch.nn.functional.one_hot gives int64 - convert it with .to(logits.dtype)")


# ---------------------------------------------------------------- task 1: ce_grad
def _ce_cases():
    """(N, C, dtype, scale) trials; the large-logit trial comes last so simpler mistakes are named first."""
    cases = [(4, 3, torch.float64, 2.0), (8, 2, torch.float32, 2.0), (17, 5, torch.float64, 3.0),
             (32, 10, torch.float32, 3.0), (3, 21, torch.float64, 1.0)]
    return cases + [(6, 4, torch.float32, 200.0)]


def _ce_diagnose(out: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, ref: torch.Tensor,
                 case: str) -> None:
    n, c = logits.shape
    onehot = F.one_hot(targets, c).to(logits.dtype)
    if not torch.isfinite(out).all():
        fail(f"ce_grad returned inf/nan for {case} (largest |logit| {logits.abs().max():.0f})",
             "exp(200) overflows float32. Subtract each row's max before exp (softmax does not "
             "change), or use torch.softmax(logits, dim=1)")
    mistakes = [
        (ref * n, "the result is N times too large: the loss is the MEAN over the batch, so divide by N"),
        (-ref, "the sign is flipped: the gradient is softmax(logits) - onehot(targets), not onehot - softmax"),
        (-ref * n, "the sign is flipped AND the 1/N is missing: use (softmax - onehot) / N"),
        ((torch.softmax(logits, 0) - onehot) / n,
         "softmax over the wrong dimension: normalise over the classes, dim=1 (each ROW sums to 1)"),
        (torch.softmax(logits, 1) / n, "the one-hot of the targets is not subtracted"),
        (torch.softmax(logits, 1) - onehot / n,
         "only the one-hot is divided by N: divide the whole difference (softmax - onehot) by N"),
    ]
    for wrong, hint in mistakes:
        if _close(out, wrong):
            fail(f"ce_grad does not match autograd for {case}", hint)
    fail(f"ce_grad does not match autograd for {case}: max difference "
         f"{(out.to(ref.dtype) - ref).abs().max().item():.3e}",
         "each row should be softmax(row) with 1 subtracted at the target class, all divided by N; "
         "check the row sums are 0 and the target-class entries negative")


def check_ce_grad(ce_grad) -> None:
    """``ce_grad(logits (N, C), targets (N,)) -> (N, C)`` must equal autograd of F.cross_entropy (mean)."""
    worst = 0.0
    cases = _ce_cases()
    for i, (n, c, dtype, scale) in enumerate(cases):
        gen = torch.Generator().manual_seed(100 + i)
        logits = (scale * torch.randn(n, c, generator=gen, dtype=torch.float64)).to(dtype)
        targets = torch.randint(0, c, (n,), generator=gen)
        case = f"logits of shape ({n}, {c}) in {str(dtype).replace('torch.', '')}"
        out = ce_grad(logits.clone(), targets.clone())  # the student's code runs first
        _check_tensor(out, logits, "ce_grad", case)
        z = logits.clone().requires_grad_(True)
        F.cross_entropy(z, targets).backward()
        ref = z.grad
        if not _close(out, ref):
            _ce_diagnose(out, logits, targets, ref, case)
        worst = max(worst, (out.double() - ref.double()).abs().max().item())
    passed(f"ce_grad matches autograd on {len(cases)} batches (float32 and float64, up to "
           f"{max(c for _, c, _, _ in cases)} classes, logits up to ±200); max difference {worst:.1e}")


# ---------------------------------------------------------------- task 2: sgd_step_with_decay
def _decay_cases():
    return [((5,), torch.float64, 0.1, 0.1), ((4, 3), torch.float32, 0.01, 0.3),
            ((2, 3, 4), torch.float64, 0.5, 0.05), ((7,), torch.float32, 0.2, 0.0)]


def _decay_diagnose(out, theta, g, lr, wd, case) -> None:
    mistakes = [
        (theta - lr * g * (1 - wd), "the decay is applied to the GRADIENT (grad·(1−λ)); weight decay "
         "shrinks the WEIGHTS: subtract lr·λ·θ"),
        (theta - lr * g - lr * wd * g, "the decay term uses the gradient (lr·λ·grad); it must use the "
         "weights: lr·λ·θ"),
        (theta - lr * g + lr * wd * theta, "the decay has the wrong sign: it must pull θ towards 0, "
         "θ − lr·grad − lr·λ·θ"),
        (theta - lr * g - wd * theta, "the decay term is missing the learning rate: lr·λ·θ, not λ·θ"),
        (theta - lr * g, "there is no weight decay at all: subtract lr·λ·θ as well"),
        (theta + lr * g - lr * wd * theta, "the step goes UP the gradient: subtract lr·grad"),
        (theta - g - wd * theta, "the learning rate is missing: θ − lr·grad − lr·λ·θ"),
    ]
    for wrong, hint in mistakes:
        if _close(out, wrong):
            fail(f"sgd_step_with_decay is wrong for {case}", hint)
    fail(f"sgd_step_with_decay is wrong for {case}", "expected θ − lr·grad − lr·λ·θ")


def check_sgd_step_with_decay(sgd_step_with_decay) -> None:
    """``sgd_step_with_decay(theta, grad, lr, weight_decay)`` must return θ − lr·grad − lr·λ·θ,
    what torch.optim.SGD(lr, weight_decay) does, without changing theta in place."""
    cases = _decay_cases()
    for i, (shape, dtype, lr, wd) in enumerate(cases):
        gen = torch.Generator().manual_seed(200 + i)
        theta = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
        g = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
        case = f"θ of shape {shape} in {str(dtype).replace('torch.', '')}, lr={lr}, weight_decay={wd}"
        theta_in, g_in = theta.clone(), g.clone()
        out = sgd_step_with_decay(theta_in, g_in, lr, wd)  # the student's code runs first
        if not torch.equal(theta_in, theta) or not torch.equal(g_in, g):
            fail(f"sgd_step_with_decay changed its input tensors in place for {case}",
                 "return a new tensor (theta - ...), do not update theta or grad with -= / mul_")
        _check_tensor(out, theta, "sgd_step_with_decay", case)
        p = torch.nn.Parameter(theta.clone())  # the library's answer: SGD with coupled decay
        p.grad = g.clone()
        torch.optim.SGD([p], lr=lr, weight_decay=wd).step()
        if not _close(out, p.detach()):
            _decay_diagnose(out, theta, g, lr, wd, case)
    passed(f"sgd_step_with_decay matches torch.optim.SGD(weight_decay=λ) on {len(cases)} cases "
           f"(float32 and float64, 1-D to 3-D)")

"""Assignment 01, task 2: smoothed targets and cross-entropy with label smoothing (loss and gradient),
checked against ``F.cross_entropy(..., label_smoothing=eps)`` and its autograd gradient."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._core import fail, passed
from .plumbing import (as_tuple, check_tensor, close_enough, crash_hint_for, dtype_name, max_abs_diff,
                       random_targets, run_watched)


# ================================================================ task 2a: smoothed targets
@dataclass(frozen=True)
class SmoothCase:
    n: int
    k: int
    eps: float
    dtype: torch.dtype
    all_classes: bool = True
    max_logit: float | None = None

    @property
    def text(self) -> str:
        return (f"N={self.n}, K={self.k}, eps={self.eps} in {dtype_name(self.dtype)}"
                + (f", logits up to ±{self.max_logit:.0f}" if self.max_logit else "")
                + ("" if self.all_classes else f", class {self.k - 1} absent from targets"))


SMOOTH_CASES = (
    SmoothCase(5, 5, 0.1, torch.float64),
    SmoothCase(8, 3, 0.3, torch.float32),
    SmoothCase(7, 6, 0.05, torch.float64, all_classes=False),
)

S_KM1 = ("ε was spread over the K−1 other classes; PyTorch spreads it over all K classes, the "
         "true one included, so every class gets ε/K and the true class (1 − ε) + ε/K")
S_NO_SCALE = ("each row sums to 1 + ε: the one-hot part must be scaled by (1 − ε) so that the row "
              "stays a probability distribution")
S_EPS_WHOLE = "every class received the whole ε: the uniform part shares ε among the K classes"
S_NO_UNIFORM = ("the uniform part is missing: (1 − ε)·onehot sums to 1 − ε; every class gets ε/K "
                "on top")
S_NO_SHARE = ("the true class did not get its share of the uniform part (each row sums to "
              "1 − ε/K): the uniform part goes to every class, the true one included")
S_PER_EXAMPLE = ("one number per example came back: targets are class indices, shape (N,); expand "
                 "them to an (N, K) one-hot first")
S_NEUTRAL = ("each row must be a probability distribution (it sums to 1): the true class gets the "
             "most, the K − 1 others equal shares")
S_CRASH = "targets are (N,) class indices; the result is (N, num_classes), one row per example"


def _smooth(y, k, eps, spread_over_others=False):
    oh = F.one_hot(y, k).double()
    if spread_over_others:
        return (1 - eps) * oh + eps / (k - 1) * (1 - oh)
    return (1 - eps) * oh + eps / k


def _smooth_mistakes(y, k, eps):
    oh = F.one_hot(y, k).double()
    return [(_smooth(y, k, eps, spread_over_others=True), S_KM1), (oh + eps / k, S_NO_SCALE),
            ((1 - eps) * oh + eps, S_EPS_WHOLE), ((1 - eps) * oh, S_NO_UNIFORM),
            ((1 - eps) * oh + eps / k * (1 - oh), S_NO_SHARE)]


def _torch_smoothed_targets(y, k, eps, gen):
    """The targets F.cross_entropy(label_smoothing=eps) uses, read off autograd:
    ∂L/∂z = (softmax(z) − q) / N, so q = softmax(z) − N·∂L/∂z for any logits z."""
    z = torch.randn(len(y), k, generator=gen, dtype=torch.float64).requires_grad_(True)
    with torch.enable_grad():
        F.cross_entropy(z, y, label_smoothing=eps).backward()
    return torch.softmax(z.detach(), dim=1) - len(y) * z.grad


def _width_hint(n: int, y: torch.Tensor, k: int) -> dict:
    m = int(y.max()) + 1
    hints = {(n,): S_PER_EXAMPLE}
    if m < k:
        hints[(n, m)] = (f"only max(targets)+1 = {m} columns came back, on a batch where class "
                         f"{k - 1} never occurs: give F.one_hot num_classes=K")
    return hints


def check_smooth_targets(smooth_targets) -> None:
    """``smooth_targets(targets (N,), num_classes, eps, dtype) -> (N, K)``: the target distribution
    of ``F.cross_entropy(..., label_smoothing=eps)``."""
    fn = "smooth_targets"
    for i, c in enumerate(SMOOTH_CASES):
        gen = torch.Generator().manual_seed(2000 + i)
        y = random_targets(gen, c.n, c.k, c.all_classes)
        out, _ = run_watched(fn, smooth_targets, (y.clone(), c.k, c.eps, c.dtype), c.text,
                      crash_hint_for(i, not c.all_classes, S_CRASH))
        check_tensor(out, fn, "the result", (c.n, c.k), c.dtype, c.text, _width_hint(c.n, y, c.k),
                      "one row of K probabilities per example: shape (N, num_classes)",
                      "the dtype argument", "the result has another dtype than the dtype argument "
                      "asks for (F.one_hot gives int64, .float() float32): convert with .to(dtype)")
        ref = _torch_smoothed_targets(y, c.k, c.eps, gen)
        if close_enough(out, ref, c.dtype):
            continue
        for wrong, hint in _smooth_mistakes(y, c.k, c.eps):
            if close_enough(out, wrong, c.dtype):
                fail(f"{fn} does not match PyTorch's label smoothing for {c.text}", hint)
        sums = out.detach().double().sum(dim=1)
        fail(f"{fn} does not match PyTorch's label smoothing for {c.text}: max difference "
             f"{max_abs_diff(out, ref):.3e}, row sums from {sums.min():.4f} to {sums.max():.4f}",
             S_NEUTRAL)
    passed(f"{fn} gives the targets of F.cross_entropy(label_smoothing=eps) on {len(SMOOTH_CASES)} "
           f"batches (K from 3 to 6, float32 and float64)")


# ================================================================ task 2b: smoothed loss, gradient
LS_CASES = (
    SmoothCase(5, 5, 0.1, torch.float64),                  # N = K
    SmoothCase(8, 3, 0.25, torch.float64),
    SmoothCase(7, 6, 0.05, torch.float64, all_classes=False),
    SmoothCase(16, 10, 0.2, torch.float32, max_logit=200.0),
)

L_LOSS_NOT_GRAD = ("label smoothing reached the loss but not the gradient: your gradient is plain "
                   "cross-entropy's; differentiate the smoothed loss, whose targets are q, not "
                   "the one-hot")
L_GRAD_NOT_LOSS = ("label smoothing reached the gradient but not the loss: your loss is plain "
                   "cross-entropy's; average −Σ_j q_j·log softmax(z)_j with the smoothed targets q")
L_IGNORED = "eps was ignored: the loss and the gradient are both plain cross-entropy's"
L_GRAD_PLAIN = ("the gradient ignores eps (it is plain cross-entropy's gradient): it must use the "
                "smoothed targets q")
L_KM1 = S_KM1
L_GRAD_TIMES_N = ("the gradient is N times too large: the loss is the mean over the batch, so the "
                  "gradient carries a factor 1/N")
L_LOSS_TIMES_N = "the loss is N times too large: it is the MEAN over the batch, not the sum"
L_GRAD_SIGN = ("the sign of the gradient is flipped: it is probabilities minus targets, "
               "softmax(z) − q")
L_LOSS_SIGN = "the loss has the wrong sign: cross-entropy is −Σ q·log p, which is ≥ 0"
L_LOG_SOFTMAX = ("log-softmax was used instead of softmax in the gradient: ∂/∂z_j of "
                 "−Σ_i q_i·log softmax(z)_i is a probability minus a target, softmax(z)_j − q_j")
L_CE_PART_ONLY = ("only the (1 − ε)·cross-entropy part was differentiated: the ε part, the "
                  "cross-entropy against the uniform distribution, has a gradient too")
L_NO_SCALE = ("your smoothed targets sum to 1 + ε per row: the one-hot part must be scaled by "
              "(1 − ε) so that they stay a probability distribution")
L_EPS_WHOLE = S_EPS_WHOLE
L_INT_LABELS = ("the class indices themselves were subtracted, as if targets were one-hot rows: "
                "build the (N, K) smoothed targets first")
L_NONFINITE = ("non-finite values with logits up to ±200: exp overflows float32 beyond 88, and "
               "log(softmax(z)) is −inf where a probability underflows to 0 (with smoothing every "
               "class has weight ε/K > 0, so one −inf spoils the loss); use torch.log_softmax and "
               "torch.softmax, which subtract each row's max first")
L_ONE_PER_EXAMPLE = ("one loss per example came back: the loss is the mean over the batch, "
                     "one number")
L_FORBIDDEN = ("F.cross_entropy is the reference this check compares with: compute the loss from "
               "torch.log_softmax and your smoothed targets")
L_GRAD_NEUTRAL = ("differentiate ℓ = −Σ_j q_j·log softmax(z)_j with respect to z_j (remember "
                  "Σ_j q_j = 1), then divide by the batch size for the mean; each row of the "
                  "gradient must sum to 0")
L_LOSS_NEUTRAL = ("the loss is the batch mean of −Σ_j q_j·log softmax(z)_j with the smoothed "
                  "targets q")
LS_CRASH = ("logits are (N, K), targets (N,) class indices; the smoothed targets and the gradient "
            "are (N, K), the loss one number")


def _ls_data(i: int, c: SmoothCase):
    gen = torch.Generator().manual_seed(3000 + i)
    z = 2.0 * torch.randn(c.n, c.k, generator=gen, dtype=torch.float64)
    if c.max_logit:
        z = z * (c.max_logit / z.abs().max())
    y = random_targets(gen, c.n, c.k, c.all_classes)
    return z.to(c.dtype).to(torch.float64), y


def _ls_reference(z, y, eps):
    zr = z.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(zr, y, label_smoothing=eps)
        loss.backward()
    return loss.detach(), zr.grad


def _ls_mistakes(z, y, eps):
    n, k = z.shape
    P, logp, oh = torch.softmax(z, 1), torch.log_softmax(z, 1), F.one_hot(y, k).double()
    q, q1 = _smooth(y, k, eps), _smooth(y, k, eps, spread_over_others=True)

    def loss(t):
        return -(t * logp).sum(1).mean()

    grads = [((P - q1) / n, L_KM1), (P - q, L_GRAD_TIMES_N), ((q - P) / n, L_GRAD_SIGN),
             ((logp - q) / n, L_LOG_SOFTMAX), ((1 - eps) * (P - oh) / n, L_CE_PART_ONLY),
             ((P - oh - eps / k) / n, L_NO_SCALE), ((P - (1 - eps) * oh - eps) / n, L_EPS_WHOLE),
             ((P - y.double()[:, None]) / n, L_INT_LABELS)]
    if n == k:
        grads.append(((P - y.double()[None, :]) / n, L_INT_LABELS))
    losses = [(loss(q1), L_KM1), (loss(q) * n, L_LOSS_TIMES_N), (-loss(q), L_LOSS_SIGN),
              (loss(oh + eps / k), L_NO_SCALE), (loss((1 - eps) * oh + eps), L_EPS_WHOLE)]
    return (P - oh) / n, loss(oh), grads, losses


def check_label_smoothing_ce(label_smoothing_ce) -> None:
    """``label_smoothing_ce(logits (N, K), targets (N,), eps) -> (loss, dlogits)`` must equal
    ``F.cross_entropy(logits, targets, label_smoothing=eps)`` and its autograd gradient."""
    fn = "label_smoothing_ce"
    for i, c in enumerate(LS_CASES):
        z, y = _ls_data(i, c)
        out, watch = run_watched(fn, label_smoothing_ce, (z.to(c.dtype), y.clone(), c.eps), c.text,
                          crash_hint_for(i, not c.all_classes, LS_CRASH),
                          named={F.cross_entropy: "F.cross_entropy"})
        if watch.called:
            fail(f"{fn} called {', '.join(watch.called)}", L_FORBIDDEN)
        loss, grad = as_tuple(out, 2, fn, "loss, dlogits", c.text)
        check_tensor(loss, fn, "the loss", (), c.dtype, c.text, {(c.n,): L_ONE_PER_EXAMPLE},
                      "the loss is one number, a 0-d tensor (what .mean() returns)")
        check_tensor(grad, fn, "dlogits", (c.n, c.k), c.dtype, c.text, {},
                      "dlogits has the shape of the logits, (N, K)")
        ref_loss, ref_grad = _ls_reference(z, y, c.eps)
        loss_ok, grad_ok = close_enough(loss, ref_loss, c.dtype), close_enough(grad, ref_grad, c.dtype)
        if loss_ok and grad_ok:
            continue
        if not (torch.isfinite(loss).all() and torch.isfinite(grad).all()):
            fail(f"{fn} returned inf/nan for {c.text}", L_NONFINITE)
        plain_grad, plain_loss, grads, losses = _ls_mistakes(z, y, c.eps)
        if not grad_ok:
            what = f"{fn}: dlogits does not match autograd for {c.text}"
            if close_enough(grad, plain_grad, c.dtype):
                fail(what, L_LOSS_NOT_GRAD if loss_ok else
                     L_IGNORED if close_enough(loss, plain_loss, c.dtype) else L_GRAD_PLAIN)
            for wrong, hint in grads:
                if close_enough(grad, wrong, c.dtype):
                    fail(what, hint)
            fail(f"{what}: max difference {max_abs_diff(grad, ref_grad):.3e}", L_GRAD_NEUTRAL)
        what = (f"{fn}: the loss is {loss.item():.6g}, F.cross_entropy(label_smoothing={c.eps}) "
                f"gives {ref_loss.item():.6g} for {c.text}")
        if close_enough(loss, plain_loss, c.dtype):
            fail(what, L_GRAD_NOT_LOSS)
        for wrong, hint in losses:
            if close_enough(loss, wrong, c.dtype):
                fail(what, hint)
        fail(what, L_LOSS_NEUTRAL)
    passed(f"{fn}: loss and gradient match F.cross_entropy(label_smoothing=eps) and its autograd "
           f"gradient on {len(LS_CASES)} batches (eps from 0.05 to 0.25, float64 and float32, "
           f"logits up to ±200), without autograd")

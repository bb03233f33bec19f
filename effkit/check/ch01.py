"""Checkers for assignment 01: the backward pass of a softmax head, and label smoothing.

The oracle is always PyTorch itself: autograd of ``torch.nn.functional.cross_entropy`` (with
``label_smoothing=eps`` for task 2), evaluated in float64. Every checker

- runs the student's function first (so an unfinished stub stops here with NotImplementedError),
  inside a ``TorchFunctionMode`` that sees every torch call it makes: any ``.backward()``,
  ``torch.autograd.grad``, ``requires_grad_`` or tensor that requires grad is reported as autograd
  use, which the tasks forbid;
- turns a crash of the student's code into a readable FAIL with a hint, never a raw traceback;
- tries its cases in a fixed order: a square one first (N = K = d), where a transposed answer or a
  sum over the wrong axis has the right shape but the wrong values; then non-square ones; then a
  batch whose largest class never occurs (a one-hot sized from the targets comes out too narrow);
  then float32 logits up to ±200 (exp overflows);
- when values differ, compares them with the classic mistakes (no 1/N, transposed, log-softmax,
  ε over K−1 classes ...) and names only a mistake whose output it reproduces; otherwise the hint
  is neutral.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ._core import fail, passed

# rtol, and atol relative to the largest reference entry (float64 agrees to ~1e-15, float32 ~1e-7).
TOL = {torch.float64: (1e-9, 1e-12), torch.float32: (1e-4, 1e-5)}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> bool:
    """Does ``out`` equal the float64 reference ``ref`` to the precision of ``dtype``?"""
    if tuple(out.shape) != tuple(ref.shape):
        return False
    out = out.detach().to(torch.float64)
    if not torch.isfinite(out).all():
        return False
    rtol, atol = TOL[dtype]
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return bool(torch.allclose(out, ref, rtol=rtol, atol=atol * (1.0 + scale)))


def _max_diff(out: torch.Tensor, ref: torch.Tensor) -> float:
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


def _run(fn_name: str, fn, args: tuple, case: str, crash_hint: str, named: dict | None = None):
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


def _check_tensor(out, fn_name: str, what: str, shape: tuple, dtype: torch.dtype, case: str,
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
        fail(f"{fn_name}: {what} is {_name(out.dtype)} for {case}, expected {_name(dtype)} "
             f"({dtype_source})", dtype_hint)


def _targets(gen: torch.Generator, n: int, k: int, all_classes: bool) -> torch.Tensor:
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


def _crash_hint(i: int, missing_top: bool, neutral: str) -> str:
    if missing_top and i > 0:
        return ("it ran on the earlier batches and crashes on the first one where the largest "
                "class index (K−1) never occurs in targets: the class axis was sized from the targets "
                "(F.one_hot(targets) without num_classes gives only max(targets)+1 columns)")
    return neutral


def _tuple(out, n: int, fn_name: str, names: str, case: str) -> tuple:
    if not isinstance(out, (tuple, list)) or len(out) != n:
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
        fail(f"{fn_name} returned {got} for {case}; expected the {n} values ({names})",
             f"end with `return {names}`")
    return tuple(out)


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
        return (f"X {(self.n, self.d)}, W {(self.k, self.d)}, b ({self.k},) in {_name(self.dtype)}"
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
    y = _targets(gen, c.n, c.k, c.all_classes)
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
        out, _ = _run(fn, softmax_head_backward, args, c.text,
                      _crash_hint(i, not c.all_classes, HEAD_CRASH))
        dX, dW, db = _tuple(out, 3, fn, "dX, dW, db", c.text)
        shapes = {"dX": (c.n, c.d), "dW": (c.k, c.d), "db": (c.k,)}
        hints = {"dX": ({}, "dX has the shape of X, (N, d)"),
                 "dW": ({(c.d, c.k): H_DW_T} if c.d != c.k else {},
                        "dW has the shape of W, (K, d)"),
                 "db": ({(c.n,): H_DB_AXIS} if c.n != c.k else {},
                        "db has the shape of b, (K,): one entry per class")}
        got = {"dX": dX, "dW": dW, "db": db}
        for name in ("dW", "db", "dX"):
            _check_tensor(got[name], fn, name, shapes[name], c.dtype, c.text, *hints[name])
        refs = dict(zip(("dX", "dW", "db"), _head_reference(X, W, b, y)))
        mistakes = None
        for name in ("dW", "db", "dX"):
            if _close(got[name], refs[name], c.dtype):
                continue
            if not torch.isfinite(got[name]).all():
                fail(f"{fn}: {name} has inf/nan for {c.text}", H_HEAD_OVERFLOW)
            mistakes = mistakes or _head_mistakes(X, W, b, y)
            for wrong, hint in mistakes[name]:
                if _close(got[name], wrong, c.dtype):
                    fail(f"{fn}: {name} does not match autograd for {c.text}", hint)
            fail(f"{fn}: {name} does not match autograd for {c.text}: max difference "
                 f"{_max_diff(got[name], refs[name]):.3e}", H_HEAD_NEUTRAL)
        worst = max(worst, *(_max_diff(got[k], refs[k]) / (1 + refs[k].abs().max().item())
                             for k in refs))
    passed(f"{fn}: dX, dW, db match autograd of F.cross_entropy(X @ W.T + b, y) on "
           f"{len(HEAD_CASES)} batches (square and not, float64 and float32, logits up to ±200), "
           f"without autograd; max relative difference {worst:.1e}")


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
        return (f"N={self.n}, K={self.k}, eps={self.eps} in {_name(self.dtype)}"
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
        y = _targets(gen, c.n, c.k, c.all_classes)
        out, _ = _run(fn, smooth_targets, (y.clone(), c.k, c.eps, c.dtype), c.text,
                      _crash_hint(i, not c.all_classes, S_CRASH))
        _check_tensor(out, fn, "the result", (c.n, c.k), c.dtype, c.text, _width_hint(c.n, y, c.k),
                      "one row of K probabilities per example: shape (N, num_classes)",
                      "the dtype argument", "the result has another dtype than the dtype argument "
                      "asks for (F.one_hot gives int64, .float() float32): convert with .to(dtype)")
        ref = _torch_smoothed_targets(y, c.k, c.eps, gen)
        if _close(out, ref, c.dtype):
            continue
        for wrong, hint in _smooth_mistakes(y, c.k, c.eps):
            if _close(out, wrong, c.dtype):
                fail(f"{fn} does not match PyTorch's label smoothing for {c.text}", hint)
        sums = out.detach().double().sum(dim=1)
        fail(f"{fn} does not match PyTorch's label smoothing for {c.text}: max difference "
             f"{_max_diff(out, ref):.3e}, row sums from {sums.min():.4f} to {sums.max():.4f}",
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
    y = _targets(gen, c.n, c.k, c.all_classes)
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
        out, watch = _run(fn, label_smoothing_ce, (z.to(c.dtype), y.clone(), c.eps), c.text,
                          _crash_hint(i, not c.all_classes, LS_CRASH),
                          named={F.cross_entropy: "F.cross_entropy"})
        if watch.called:
            fail(f"{fn} called {', '.join(watch.called)}", L_FORBIDDEN)
        loss, grad = _tuple(out, 2, fn, "loss, dlogits", c.text)
        _check_tensor(loss, fn, "the loss", (), c.dtype, c.text, {(c.n,): L_ONE_PER_EXAMPLE},
                      "the loss is one number, a 0-d tensor (what .mean() returns)")
        _check_tensor(grad, fn, "dlogits", (c.n, c.k), c.dtype, c.text, {},
                      "dlogits has the shape of the logits, (N, K)")
        ref_loss, ref_grad = _ls_reference(z, y, c.eps)
        loss_ok, grad_ok = _close(loss, ref_loss, c.dtype), _close(grad, ref_grad, c.dtype)
        if loss_ok and grad_ok:
            continue
        if not (torch.isfinite(loss).all() and torch.isfinite(grad).all()):
            fail(f"{fn} returned inf/nan for {c.text}", L_NONFINITE)
        plain_grad, plain_loss, grads, losses = _ls_mistakes(z, y, c.eps)
        if not grad_ok:
            what = f"{fn}: dlogits does not match autograd for {c.text}"
            if _close(grad, plain_grad, c.dtype):
                fail(what, L_LOSS_NOT_GRAD if loss_ok else
                     L_IGNORED if _close(loss, plain_loss, c.dtype) else L_GRAD_PLAIN)
            for wrong, hint in grads:
                if _close(grad, wrong, c.dtype):
                    fail(what, hint)
            fail(f"{what}: max difference {_max_diff(grad, ref_grad):.3e}", L_GRAD_NEUTRAL)
        what = (f"{fn}: the loss is {loss.item():.6g}, F.cross_entropy(label_smoothing={c.eps}) "
                f"gives {ref_loss.item():.6g} for {c.text}")
        if _close(loss, plain_loss, c.dtype):
            fail(what, L_GRAD_NOT_LOSS)
        for wrong, hint in losses:
            if _close(loss, wrong, c.dtype):
                fail(what, hint)
        fail(what, L_LOSS_NEUTRAL)
    passed(f"{fn}: loss and gradient match F.cross_entropy(label_smoothing=eps) and its autograd "
           f"gradient on {len(LS_CASES)} batches (eps from 0.05 to 0.25, float64 and float32, "
           f"logits up to ±200), without autograd")

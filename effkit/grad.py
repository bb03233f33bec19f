"""Gradients by hand: cross-entropy, checked against autograd, and a head trained without autograd.

Notation (chapter 01): the empirical risk over a batch of N examples is
``L(θ) = 1/N Σ_i ℓ(M_θ(x_i), y_i)`` and one step of gradient descent with weight decay is
``θ ← θ − η ∇L − η λ θ``.

- ``cross_entropy_grad(logits, targets)``: ∂L/∂logits of the batch-mean softmax cross-entropy,
  ``(softmax(logits) − onehot(targets)) / N``; ``cross_entropy_grad_chain_rule`` gets the same
  matrix the long way, one chain-rule step at a time.
- ``binary_cross_entropy_grad(logits, targets)``: the two-class special case, ``(σ(z) − y) / N``.
- ``numerical_grad(f, x)`` (central differences) and ``compare(name, ours, reference)``.
- ``weight_decay_step`` and ``decay_rules_demo`` (L2-in-the-loss vs decoupled decay, SGD vs Adam).
- ``train_softmax_head``: a linear softmax classifier trained with the hand-written gradient only,
  with ``standardize`` (train statistics) and ``majority_baseline`` (the number to beat).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


# ---------------------------------------------------------------- input checks
def _check_logits_targets(logits, targets) -> None:
    """Raise a clear error unless logits is (N, C) floating and targets is (N,) integer in [0, C)."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor of shape (N, C), got {type(logits).__name__}")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor of shape (N,), got {type(targets).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D with shape (N, C), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor (float32/float64), got {logits.dtype}")
    if targets.ndim != 1:
        raise ValueError(f"targets must be 1-D with shape (N,) of class indices, "
                         f"got shape {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices (e.g. torch.long), got {targets.dtype}")
    n, c = logits.shape
    if targets.shape[0] != n:
        raise ValueError(f"logits has N={n} rows (shape {tuple(logits.shape)}) but targets has "
                         f"{targets.shape[0]} entries (shape {tuple(targets.shape)}); they must match")
    if n == 0:
        raise ValueError("the batch is empty (N=0): the mean loss over zero examples is undefined")
    if c == 0:
        raise ValueError(f"logits has zero classes (shape {tuple(logits.shape)})")
    lo, hi = int(targets.min()), int(targets.max())
    if lo < 0 or hi >= c:
        raise ValueError(f"targets must be class indices in [0, C) = [0, {c}), got values from {lo} "
                         f"to {hi} (ignore_index such as -100 is not supported here)")


# ---------------------------------------------------------------- softmax cross-entropy
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Batch-mean softmax cross-entropy, written out: ``mean_i(logsumexp(z_i) − z_i[y_i])``.

    logits: (N, C) floating; targets: (N,) integer in [0, C). Returns a 0-d tensor, the same value
    as ``torch.nn.functional.cross_entropy(logits, targets)`` (reduction='mean').
    """
    _check_logits_targets(logits, targets)
    rows = torch.arange(logits.shape[0], device=logits.device)
    # logsumexp subtracts the row max before exp, so large logits do not overflow.
    return (torch.logsumexp(logits, dim=1) - logits[rows, targets]).mean()


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """∂L/∂logits for the batch-mean cross-entropy: ``(softmax(logits) − onehot(targets)) / N``.

    logits: (N, C) floating; targets: (N,) integer in [0, C).
    Returns dlogits, shape (N, C), same dtype and device as logits. Each row sums to 0: the true
    class gets p_y − 1 (negative), every other class its probability p_j (positive), all over N.
    """
    _check_logits_targets(logits, targets)
    n, c = logits.shape
    probs = torch.softmax(logits, dim=1)  # softmax is shift-invariant; torch subtracts the row max
    onehot = torch.nn.functional.one_hot(targets.long(), c).to(probs.dtype)
    return (probs - onehot) / n  # the 1/N of the empirical risk: the loss is a mean over the batch


def cross_entropy_grad_chain_rule(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same gradient as ``cross_entropy_grad``, derived the long way (Karpathy's backprop ninja).

    The forward pass is split into elementary steps; the backward pass applies the chain rule to
    each, in reverse. Every line is a local derivative times the gradient flowing in. Shapes:
    logits (N, C), targets (N,); returns (N, C).
    """
    _check_logits_targets(logits, targets)
    n, _ = logits.shape
    rows = torch.arange(n, device=logits.device)
    # forward, one small step at a time
    row_max = logits.max(dim=1, keepdim=True).values       # (N, 1) for numerical stability
    shifted = logits - row_max                              # (N, C)
    counts = shifted.exp()                                  # (N, C)
    counts_sum = counts.sum(dim=1, keepdim=True)            # (N, 1)
    counts_sum_inv = counts_sum ** -1                       # (N, 1)
    probs = counts * counts_sum_inv                         # (N, C) softmax
    # loss = -logprobs[rows, targets].mean(), with logprobs = probs.log()
    # backward, last step first
    dlogprobs = torch.zeros_like(logits)
    dlogprobs[rows, targets] = -1.0 / n                     # d(-mean)/d(picked logprob)
    dprobs = dlogprobs / probs                              # d log p / dp = 1/p
    dcounts_sum_inv = (counts * dprobs).sum(dim=1, keepdim=True)  # broadcast in forward -> sum
    dcounts = counts_sum_inv * dprobs                       # first path into counts
    dcounts_sum = -counts_sum ** -2 * dcounts_sum_inv       # d(x^-1)/dx = -x^-2
    dcounts = dcounts + dcounts_sum.expand_as(counts)       # second path: sum in forward -> broadcast
    dshifted = counts * dcounts                             # d exp(x)/dx = exp(x)
    dlogits = dshifted.clone()                              # first path into logits
    drow_max = -dshifted.sum(dim=1, keepdim=True)           # (N, 1); zero up to rounding
    onehot_max = torch.zeros_like(logits)
    onehot_max[rows, logits.argmax(dim=1)] = 1.0
    dlogits = dlogits + onehot_max * drow_max                # second path: through the max
    return dlogits


# ---------------------------------------------------------------- binary cross-entropy
def binary_cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """∂L/∂z for the batch-mean binary cross-entropy of sigmoid outputs ``p = σ(z)``: ``(σ(z) − y) / N``.

    logits: (N,) floating, one score per example; targets: (N,) with values 0 or 1 (any dtype).
    Returns (N,), same dtype as logits; equals autograd of
    ``torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)``.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("logits and targets must both be torch.Tensors of shape (N,)")
    if logits.ndim != 1 or targets.ndim != 1:
        raise ValueError(f"logits and targets must be 1-D (N,), got shapes {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")
    if logits.shape != targets.shape or logits.shape[0] == 0:
        raise ValueError(f"logits and targets must have the same non-zero length, got "
                         f"{logits.shape[0]} and {targets.shape[0]}")
    if not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError("targets must be 0 or 1 for binary cross-entropy")
    return (torch.sigmoid(logits) - targets.to(logits.dtype)) / logits.shape[0]


# ---------------------------------------------------------------- checking gradients
def numerical_grad(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   eps: float = 1e-6) -> torch.Tensor:
    """Central differences ``(f(x + eps·e_k) − f(x − eps·e_k)) / (2·eps)`` for every element k.

    f: maps a tensor shaped like x to a scalar. x: floating tensor (use float64: in float32 the
    rounding error of f swamps a small eps). Costs 2·x.numel() calls of f, so keep x small.
    Returns a tensor shaped like x.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating torch.Tensor, got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    x = x.detach().clone()
    grad = torch.zeros_like(x)
    flat_x, flat_g = x.view(-1), grad.view(-1)
    for k in range(flat_x.numel()):
        old = flat_x[k].item()
        flat_x[k] = old + eps
        up = float(f(x))
        flat_x[k] = old - eps
        down = float(f(x))
        flat_x[k] = old
        flat_g[k] = (up - down) / (2 * eps)
    return grad


@dataclass
class Comparison:
    """What ``compare`` found: bit-exact equality, allclose, and the largest absolute difference."""
    name: str
    exact: bool
    approx: bool
    max_diff: float

    def __str__(self) -> str:
        return (f"{self.name:<24} | exact: {str(self.exact):5} | approximate: {str(self.approx):5} "
                f"| max diff: {self.max_diff:.3e}")


def compare(name: str, ours: torch.Tensor, reference: torch.Tensor, *, rtol: float = 1e-5,
            atol: float = 1e-8, quiet: bool = False) -> Comparison:
    """Karpathy's ``cmp``: print and return whether ``ours`` equals ``reference`` exactly,
    approximately (``torch.allclose`` with rtol/atol) and the max absolute difference.

    Bit-exact agreement is not expected: the hand-written formula rounds in a different order.
    """
    if not isinstance(ours, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise TypeError("compare needs two torch.Tensors")
    if ours.shape != reference.shape:
        raise ValueError(f"{name}: shapes differ, ours {tuple(ours.shape)} vs reference "
                         f"{tuple(reference.shape)}")
    ours, reference = ours.detach(), reference.detach().to(ours.dtype)
    result = Comparison(name, bool(torch.equal(ours, reference)),
                        bool(torch.allclose(ours, reference, rtol=rtol, atol=atol)),
                        float((ours - reference).abs().max()) if ours.numel() else 0.0)
    if not quiet:
        print(result)
    return result


def autograd_cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference: ∂/∂logits of ``torch.nn.functional.cross_entropy`` (mean) via autograd."""
    z = logits.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        torch.nn.functional.cross_entropy(z, targets).backward()
    return z.grad


# ---------------------------------------------------------------- weight decay
def weight_decay_step(theta: torch.Tensor, grad: torch.Tensor, lr: float,
                      weight_decay: float) -> torch.Tensor:
    """One step ``θ ← θ − η·∇L − η·λ·θ``; returns the new θ (the input is not modified).

    The decay term shrinks the weights themselves, by the factor (1 − ηλ), whatever the gradient.
    """
    if theta.shape != grad.shape:
        raise ValueError(f"theta and grad must have the same shape, got {tuple(theta.shape)} and "
                         f"{tuple(grad.shape)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return theta - lr * grad - lr * weight_decay * theta


def decay_rules_demo(optimizer: str, *, steps: int = 20, lr: float = 0.1, weight_decay: float = 0.1,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """Run the same tiny least-squares problem three ways and return the final weights of each.

    optimizer: ``"sgd"`` or ``"adam"``.
    - ``"L2 in the loss"``: loss + λ/2·‖θ‖², no optimizer decay (the gradient gets + λθ);
    - ``"optimizer weight_decay"``: torch.optim.SGD/Adam with ``weight_decay=λ`` (coupled: also + λθ);
    - ``"decoupled"``: SGD with our ``weight_decay_step``, or torch.optim.AdamW (θ ← θ − ηλθ, then Adam).
    For SGD all three agree (up to rounding); for Adam the decoupled one differs, because Adam
    divides the λθ that L2 adds to the gradient by √v, so heavily-updated weights decay less.
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(16, generator=gen, dtype=torch.float64)
    theta0 = torch.randn(4, generator=gen, dtype=torch.float64)

    def data_loss(theta):
        return 0.5 * ((X @ theta - y) ** 2).mean()

    def run(loss_fn, make_opt):
        theta = theta0.clone().requires_grad_(True)
        opt = make_opt([theta])
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(theta).backward()
            opt.step()
        return theta.detach()

    l2_loss = lambda t: data_loss(t) + 0.5 * weight_decay * (t ** 2).sum()  # noqa: E731
    cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    out = {
        "L2 in the loss": run(l2_loss, lambda p: cls(p, lr=lr)),
        "optimizer weight_decay": run(data_loss, lambda p: cls(p, lr=lr, weight_decay=weight_decay)),
    }
    if optimizer == "adam":
        out["decoupled"] = run(data_loss, lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=weight_decay))
    else:
        theta = theta0.clone()
        for _ in range(steps):
            t = theta.clone().requires_grad_(True)
            data_loss(t).backward()
            theta = weight_decay_step(theta, t.grad, lr, weight_decay)
        out["decoupled"] = theta
    return out


# ---------------------------------------------------------------- a softmax head, no autograd
@dataclass
class SoftmaxHead:
    """A linear classifier ``logits = X @ W + b``; W (D, C), b (C,). ``history`` holds one entry
    per epoch (epoch 0 = before training): train/dev loss (mean cross-entropy) and accuracy."""
    W: torch.Tensor
    b: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.W + self.b

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return self.logits(X).argmax(dim=1)

    def accuracy(self, X: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.predict(X) == y).double().mean())


def _check_features(X, y, what: str) -> None:
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or not X.is_floating_point():
        raise ValueError(f"{what} features must be a 2-D floating tensor (N, D), got "
                         f"{tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__}")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point():
        raise ValueError(f"{what} labels must be a 1-D integer tensor (N,)")
    if X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"{what}: {X.shape[0]} feature rows but {y.shape[0]} labels "
                         f"(they must match and be > 0)")


def train_softmax_head(X: torch.Tensor, y: torch.Tensor, X_dev: torch.Tensor, y_dev: torch.Tensor,
                       *, lr: float = 0.5, weight_decay: float = 1e-4, epochs: int = 30,
                       batch_size: int = 64, seed: int = 0,
                       num_classes: int | None = None) -> SoftmaxHead:
    """Minibatch gradient descent on a softmax head with the hand-written gradient, no autograd.

    X (N, D), y (N,) train; X_dev, y_dev the same for dev (only measured, never trained on).
    Each step: dlogits = cross_entropy_grad, dW = Xᵀ·dlogits, db = Σ_rows dlogits, then
    W ← W − η·dW − η·λ·W (``weight_decay_step``) and b ← b − η·db (biases are not decayed:
    shrinking an offset towards 0 does not make the model simpler).
    Returns a ``SoftmaxHead`` with its per-epoch ``history``.
    """
    _check_features(X, y, "train")
    _check_features(X_dev, y_dev, "dev")
    if X_dev.shape[1] != X.shape[1]:
        raise ValueError(f"train has D={X.shape[1]} features but dev has {X_dev.shape[1]}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not lr > 0 or not weight_decay >= 0:
        raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
    c = num_classes if num_classes is not None else int(max(y.max(), y_dev.max())) + 1
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # nothing here may build a graph: every gradient is written by hand
        head = SoftmaxHead(torch.zeros(X.shape[1], c, dtype=X.dtype, device=X.device),
                           torch.zeros(c, dtype=X.dtype, device=X.device))
        head.history = {k: [] for k in ("epoch", "train_loss", "dev_loss", "train_accuracy",
                                        "dev_accuracy")}
        _log_epoch(head, 0, X, y, X_dev, y_dev)
        for epoch in range(1, epochs + 1):
            order = torch.randperm(X.shape[0], generator=gen).to(X.device)
            for start in range(0, X.shape[0], batch_size):
                idx = order[start:start + batch_size]
                xb = X[idx]
                dlogits = cross_entropy_grad(head.logits(xb), y[idx])  # (B, C), already / B
                dW = xb.T @ dlogits                                    # (D, C)
                db = dlogits.sum(dim=0)                                # (C,)
                head.W = weight_decay_step(head.W, dW, lr, weight_decay)
                head.b = head.b - lr * db
            _log_epoch(head, epoch, X, y, X_dev, y_dev)
    return head


def _log_epoch(head: SoftmaxHead, epoch: int, X, y, X_dev, y_dev) -> None:
    h = head.history
    h["epoch"].append(epoch)
    h["train_loss"].append(float(cross_entropy(head.logits(X), y)))
    h["dev_loss"].append(float(cross_entropy(head.logits(X_dev), y_dev)))
    h["train_accuracy"].append(head.accuracy(X, y))
    h["dev_accuracy"].append(head.accuracy(X_dev, y_dev))


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Z-score every feature with the TRAIN mean and std, and apply the same shift/scale to ``others``.

    train (N, D), others (M, D) each. Returns ``[train_z, *others_z]``. Statistics come from train
    only, so nothing about dev/test leaks into the model. Equal feature scales let one learning
    rate suit every weight (raw normalised embeddings have per-feature std near 0.05, the bias 1).
    """
    if train.ndim != 2 or train.shape[0] < 2:
        raise ValueError(f"train must be (N, D) with N >= 2, got shape {tuple(train.shape)}")
    mean, std = train.mean(dim=0), train.std(dim=0)
    if (std == 0).any():
        raise ValueError(f"{int((std == 0).sum())} feature(s) are constant on train; "
                         f"drop them before standardizing (their std is 0)")
    for other in others:
        if other.ndim != 2 or other.shape[1] != train.shape[1]:
            raise ValueError(f"every tensor must have D={train.shape[1]} columns, got {tuple(other.shape)}")
    return [(t - mean) / std for t in (train, *others)]


def majority_baseline(y_train, y_eval) -> tuple[int, float]:
    """The class most frequent in TRAIN, and the accuracy of always predicting it on ``y_eval``."""
    y_train, y_eval = torch.as_tensor(y_train), torch.as_tensor(y_eval)
    if y_train.numel() == 0 or y_eval.numel() == 0:
        raise ValueError("majority_baseline needs non-empty label lists")
    majority = int(torch.bincount(y_train).argmax())
    return majority, float((y_eval == majority).double().mean())

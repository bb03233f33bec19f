"""The one training loop of effkit, and the fine-tuned baselines later chapters reuse.

``fit(model, train_loader, dev_loader, TrainConfig(...))`` trains any transformers classifier
(sequence or token head): AdamW over the trainable parameters only, linear warmup then linear
decay, gradient clipping, autocast per ``config.precision``, early stopping on the dev metric that
restores the best weights, all seeded so the same seed gives the same numbers.

Later chapters never copy this loop; they extend it with a :class:`Hook` (mask gradients for
pruning, all-reduce them for data parallelism, re-apply masks after each step ...).

``evaluate`` lives in :mod:`effkit.evaluate` and is re-exported here. The cached baselines that
later chapters reuse live in :mod:`effkit.baselines`.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from .config import device as default_device
from .config import seed_everything
from .batching import IGNORE_INDEX
from .evaluate import (PRECISIONS, PRIMARY_METRIC, TASKS, autocast_context, check_batch,
                       check_label_names, evaluate)


# ---------------------------------------------------------------- configuration
# Bump only when a field changes meaning: every cached checkpoint is then retrained.
CONFIG_SCHEMA = 1


def added_field(default, **kwargs):
    """A TrainConfig field added after the schema was fixed; ``default`` must reproduce the old
    behaviour, because a config at the default keeps its old cache key."""
    return field(default=default, metadata={"added": True}, **kwargs)


@dataclass
class TrainConfig:
    """Everything that decides a training run. Its fields are part of a checkpoint's cache key."""
    lr: float = 5e-5
    weight_decay: float = 0.01
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 64
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    patience: int = 2               # early stopping: evaluations without improvement before stopping
    seed: int = 0
    precision: str = "fp32"         # "fp32" | "bf16" (autocast, CPU+GPU) | "fp16" (autocast+GradScaler, CUDA)
    max_steps: int | None = None    # cap on total optimizer steps (sweeps use a fixed step budget)
    eval_every: int | None = None   # evaluate every N steps (None: once per epoch)
    # Chapter 07: one optimizer step per k batches of batch_size, their gradients summed with
    # each batch weighted by its share of the labels, so k x B equals one batch of k*B.
    grad_accum_steps: int = added_field(1)

    def __post_init__(self):
        _require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("epochs", "batch_size", "max_length", "patience", "grad_accum_steps"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, f"{name} must be an int >= 1, got {value!r}")
        _require(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _require(self.max_grad_norm > 0, f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        _require(self.precision in PRECISIONS,
                 f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("max_steps", "eval_every"):
            value = getattr(self, name)
            _require(value is None or (isinstance(value, int) and value >= 1),
                     f"{name} must be None or an int >= 1, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def cache_fields(self) -> dict:
        """The fields that go into a checkpoint's cache key (schema :data:`CONFIG_SCHEMA`).

        A field added after checkpoints were cached is declared with :func:`added_field`; while
        it holds its default (the behaviour from before it existed) it is left out of the key, so
        adding it retrains nothing. Any other value, and any change to an older field, gives a new
        key.
        """
        return {"schema": CONFIG_SCHEMA,
                **{f.name: getattr(self, f.name) for f in fields(self)
                   if not (f.metadata.get("added") and getattr(self, f.name) == f.default)}}


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class Hook:
    """Extension points of :func:`fit`. Subclass and override what you need; all default to no-ops.

    Called in this order each step: forward, backward (with gradient accumulation: forward and
    backward of every micro-batch), (fp16: unscale), ``after_backward``, clip, optimizer step,
    scheduler step, zero grads, ``after_step``.
    """

    def on_train_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Once, after the optimizer exists and before the first step."""

    def after_backward(self, model: nn.Module) -> None:
        """Gradients are in ``p.grad`` (true scale, even with fp16): all-reduce or mask them here."""

    def after_step(self, model: nn.Module) -> None:
        """The weights were just updated: re-apply pruning masks here."""

    def on_evaluate(self, step: int, metrics: dict) -> None:
        """After each dev evaluation, with the full metrics dict."""


@dataclass
class History:
    """What happened during :func:`fit`.

    train_loss / learning_rate: one value per optimizer step.
    evals: one dict per dev evaluation, ``{"step", "epoch", <scalar metrics>}``.
    best_step / best_metric: the evaluation early stopping kept (its weights are in the model).
    """
    metric: str
    train_loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    best_step: int | None = None
    best_metric: float | None = None
    seconds: float = 0.0
    steps: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        return cls(**data)

    def eval_frame(self):
        """The dev evaluations as a pandas DataFrame (one row per evaluation)."""
        import pandas as pd

        return pd.DataFrame(self.evals)


# ---------------------------------------------------------------- optimizer pieces
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the trainable parameters: with decay, and without it.

    Biases and LayerNorm weights get no decay: shrinking them toward zero does not regularise
    anything, it just shifts activations and rescales normalised features.
    Frozen parameters (``requires_grad=False``) are left out, so the optimizer holds no state
    for them (this is what makes LoRA's optimizer small).
    """
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            is_norm = isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(module).__name__.lower()
            (no_decay if name == "bias" or is_norm else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def adamw_by_hand(theta: torch.Tensor, grads: list[torch.Tensor], lr: float, weight_decay: float,
                  betas=(0.9, 0.999), eps: float = 1e-8) -> torch.Tensor:
    """AdamW written out, to check ``torch.optim.AdamW`` against (one tensor, fixed lr).

    For each gradient g_t (t = 1, 2, ...):
        m_t = b1 m + (1 - b1) g,   v_t = b2 v + (1 - b2) g^2              (moving averages)
        m^ = m_t / (1 - b1^t),     v^ = v_t / (1 - b2^t)                  (bias correction)
        theta <- theta - lr * weight_decay * theta - lr * m^ / (sqrt(v^) + eps)
    The decay term is the chapter-01 update rule's -eta*lambda*theta, applied to the weights
    directly ("decoupled"), not added to the gradient where Adam's scaling would distort it.
    Returns the final theta (a new tensor).
    """
    theta = theta.detach().clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        theta = theta - lr * weight_decay * theta - lr * m_hat / (v_hat.sqrt() + eps)
    return theta


def _scheduler(optimizer, total_steps: int, warmup_ratio: float):
    from transformers import get_linear_schedule_with_warmup

    warmup = int(math.ceil(warmup_ratio * total_steps))
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


# ---------------------------------------------------------------- the loop
def fit(model: nn.Module, train_loader, dev_loader, config: TrainConfig, task: str = "sequence",
        label_names: list[str] | None = None, hooks=(), progress: bool = True,
        device=None) -> History:
    """Fine-tune ``model`` in place and return its :class:`History`.

    model: a transformers ``*ForSequenceClassification`` / ``*ForTokenClassification`` (anything
        whose forward takes the batch keys and returns ``.loss`` and ``.logits``).
    train_loader / dev_loader: DataLoaders of dict batches with ``labels`` (see effkit.batching);
        ``dev_loader=None`` trains without evaluation or early stopping.
    task: ``"sequence"`` (early stopping on dev accuracy) or ``"token"`` (on dev entity F1).
    label_names: needed for ``task="token"`` (seqeval works on tag names).
    hooks: :class:`Hook` objects, called in order.
    device: where to train; None means ``ek.device()``.
    The model is left in eval mode, holding the best evaluated weights (or the last ones when
    there is no dev set).
    """
    _check_fit_args(model, train_loader, config, task, label_names)
    dev = torch.device(device) if device is not None else default_device()
    seed_everything(config.seed)
    generator = getattr(train_loader, "generator", None)
    if generator is not None:  # same seed, same batch order, even when a loader is reused
        generator.manual_seed(config.seed)
    model.to(dev)

    steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum_steps)
    total = steps_per_epoch * config.epochs
    total = min(total, config.max_steps) if config.max_steps else total
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    scheduler = _scheduler(optimizer, total, config.warmup_ratio)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None  # CUDA path
    autocast_context(dev, config.precision)  # fail before training on an impossible precision
    trainable = [p for p in model.parameters() if p.requires_grad]
    history = History(metric=PRIMARY_METRIC[task])
    best_state, waited = None, 0
    for hook in hooks:
        hook.on_train_start(model, optimizer)

    start = time.perf_counter()
    bar = _progress_bar(total, progress)
    step = 0
    model.train()
    for epoch in range(1, config.epochs + 1):
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new shuffle every epoch
            sampler.set_epoch(epoch - 1)
        for batches in _micro_batches(train_loader, config.grad_accum_steps):
            loss = _train_step(model, batches, dev, config, optimizer, scheduler, scaler,
                               trainable, hooks)
            step += 1
            history.train_loss.append(loss)
            history.learning_rate.append(scheduler.get_last_lr()[0])
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            done = step >= total
            end_of_epoch = step % steps_per_epoch == 0
            due = (step % config.eval_every == 0) if config.eval_every else end_of_epoch
            if dev_loader is not None and (due or done):
                metrics = evaluate(model, dev_loader, task, label_names, config.precision)
                model.train()
                _log_eval(history, step, epoch, metrics, hooks, bar)
                score = metrics[history.metric]
                if history.best_metric is None or score > history.best_metric:
                    history.best_metric, history.best_step, waited = score, step, 0
                    best_state = _trainable_state(model)
                else:
                    waited += 1
                    if waited >= config.patience:
                        history.stopped_early = not done
                        done = True
            if done:
                break
        if step >= total or history.stopped_early:
            break
    bar.close()
    if best_state is not None and history.best_step != step:
        _restore(model, best_state)  # early stopping keeps the best evaluated weights
    if dev_loader is None:
        history.best_step = step
    history.steps = step
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


def _micro_batches(loader, k: int):
    """Lists of ``k`` consecutive batches (the last list of an epoch may be shorter)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == k:
            yield group
            group = []
    if group:
        yield group


def _train_step(model, batches, dev, config, optimizer, scheduler, scaler, trainable, hooks):
    """One optimizer step on a list of micro-batches (one batch without accumulation); returns
    the loss of all of them together as a float.

    With several micro-batches each loss is weighted by its share of the labels before its
    backward, so the summed gradient is the gradient of the mean loss over all of them: the
    gradient one big batch would give. A DDP model skips its all-reduce (``no_sync``) on all but
    the last micro-batch."""
    counts = [int((b["labels"] != IGNORE_INDEX).sum()) for b in batches] if len(batches) > 1 else [1]
    total = 0.0
    for i, batch in enumerate(batches):
        check_batch(batch, model)
        batch = {k: v.to(dev) for k, v in batch.items()}
        last = i == len(batches) - 1
        with (nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()):
            with autocast_context(dev, config.precision):
                loss = model(**batch).loss
            if len(batches) > 1:
                loss = loss * (counts[i] / max(sum(counts), 1))
            if scaler is not None:  # CUDA path: fp16 gradients would underflow without loss scaling
                scaler.scale(loss).backward()
            else:
                loss.backward()
        total += float(loss.detach())
    if scaler is not None:  # CUDA path
        scaler.unscale_(optimizer)
    for hook in hooks:
        hook.after_backward(model)
    torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
    if scaler is not None:  # CUDA path
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    for hook in hooks:
        hook.after_step(model)
    return total


def _log_eval(history, step, epoch, metrics, hooks, bar) -> None:
    scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    history.evals.append({"step": step, "epoch": epoch, **scalars})
    if not bar.disable:
        bar.write(f"step {step} (epoch {epoch}): dev {history.metric} {metrics[history.metric]:.4f}")
    for hook in hooks:
        hook.on_evaluate(step, metrics)


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # Only what training changes: for LoRA this is a few hundred KB, not the whole model.
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _restore(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def _progress_bar(total: int, enabled: bool):
    # A widget bar in JupyterLab (the text bar shows there as a pink stderr box), the text bar in
    # headless runs such as the book build (a widget would be frozen at 0% in the static pages):
    # see effkit.ui.progress_bar.
    from .ui import progress_bar

    return progress_bar(total=total, desc="fit", unit="step", disable=not enabled, mininterval=1.0)


def _check_fit_args(model, train_loader, config, task, label_names) -> None:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "token" and label_names is None:
        raise ValueError("task='token' needs label_names (the BIO tag names, in label-id order) "
                         "to compute entity F1")
    check_label_names(model, label_names)
    if len(train_loader) == 0:
        raise ValueError("train_loader is empty: there is nothing to train on")


__all__ = ["TrainConfig", "Hook", "History", "param_groups", "adamw_by_hand", "fit", "evaluate",
           "autocast_context"]
